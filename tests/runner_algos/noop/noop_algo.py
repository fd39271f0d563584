"""A no-op algorithm: reads the frame (a view) and returns OK."""

from __future__ import annotations

from typing import Any

from procvision_algorithm_sdk import BaseAlgorithm, read_image_from_shared_memory


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
        return {"status": "OK", "data": {"result_status": "OK"}}
