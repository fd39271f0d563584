"""A no-op execute-only algorithm: touches both images and answers OK."""

from __future__ import annotations

from procvision_algorithm_sdk import BaseAlgorithm


class ExecuteOnlyNoop(BaseAlgorithm):
    """execute(step_index, step_desc, cur_image, guide_image, guide_info) -> OK."""

    def execute(self, step_index, step_desc, cur_image, guide_image, guide_info):  # type: ignore[no-untyped-def]
        int(cur_image[0, 0, 0]) + int(guide_image[0, 0, 0])
        return {"status": "OK", "data": {"result_status": "OK"}}
