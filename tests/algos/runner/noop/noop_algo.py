"""A no-op algorithm: reads the frame (a view) and returns OK."""

from __future__ import annotations

import os
import time
from typing import Any

from procvision_algorithm_sdk import BaseAlgorithm, read_image_from_shared_memory

# Tests that compare callers set a fixed execute time, so OS scheduling noise stays small
# against the call itself; unset (benchmarks), execute returns at once.
_EXECUTE_S = float(os.environ.get("PROC_TEST_NOOP_EXECUTE_MS", "0")) / 1000


class Noop(BaseAlgorithm):
    """Reads the image and answers OK."""

    def get_info(self) -> dict[str, Any]:
        return {
            "name": "noop",
            "version": "1.0.0",
            "supported_pids": ["n1"],
            "steps": [{"index": 1, "name": "only", "params": []}],
        }

    def pre_execute(self, step_index, pid, session, user_params, shared_mem_id, image_meta):
        read_image_from_shared_memory(shared_mem_id, image_meta)
        return {"status": "OK", "message": "", "data": {}}

    def execute(self, step_index, pid, session, user_params, shared_mem_id, image_meta):
        read_image_from_shared_memory(shared_mem_id, image_meta)
        if _EXECUTE_S:
            time.sleep(_EXECUTE_S)
        return {"status": "OK", "data": {"result_status": "OK"}}
