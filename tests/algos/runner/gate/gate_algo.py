"""Holds execute until the file named by user_params["gate"] exists (at most 60 s)."""

from __future__ import annotations

import os
import time
from typing import Any

from procvision_algorithm_sdk import BaseAlgorithm, read_image_from_shared_memory

_DEADLINE_S = 60.0


class Gate(BaseAlgorithm):
    """A step that returns only when the test opens its gate."""

    def get_info(self) -> dict[str, Any]:
        return {
            "name": "gate",
            "version": "1.0.0",
            "supported_pids": ["g1"],
            "steps": [{"index": 1, "name": "only", "params": [{"key": "gate", "type": "string"}]}],
        }

    def pre_execute(self, step_index, pid, session, user_params, shared_mem_id, image_meta):
        return {"status": "OK", "message": "", "data": {}}

    def execute(self, step_index, pid, session, user_params, shared_mem_id, image_meta):
        image = read_image_from_shared_memory(shared_mem_id, image_meta)
        gate = user_params.get("gate")
        deadline = time.monotonic() + _DEADLINE_S
        while gate and not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.02)
        opened = bool(gate) and os.path.exists(gate)
        return {
            "status": "OK",
            "data": {
                "result_status": "OK" if opened else "NG",
                "ng_reason": "gate closed",
                "defect_rects": [],
                "pixel": int(image[0, 0, 0]),
            },
        }
