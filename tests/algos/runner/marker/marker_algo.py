"""NG with the marker's bounding box when pure red (255, 0, 0) pixels are in the frame."""

from __future__ import annotations

from typing import Any

import numpy as np

from procvision_algorithm_sdk import BaseAlgorithm, read_image_from_shared_memory


class Marker(BaseAlgorithm):
    """Finds a pure red marker; reports which segment it read (zero-copy checks)."""

    def get_info(self) -> dict[str, Any]:
        return {
            "name": "marker",
            "version": "1.0.0",
            "supported_pids": ["m1"],
            "steps": [
                {
                    "index": 1,
                    "name": "find marker",
                    "params": [
                        {
                            "key": "min_pixels",
                            "type": "int",
                            "description": "smallest marker",
                            "default": 1,
                            "min": 1,
                            "max": 1000000,
                            "unit": "px",
                        }
                    ],
                }
            ],
        }

    def pre_execute(self, step_index, pid, session, user_params, shared_mem_id, image_meta):
        image = read_image_from_shared_memory(shared_mem_id, image_meta, strict=True)
        return {"status": "OK", "message": f"{image.shape[1]}x{image.shape[0]}", "data": {}}

    def execute(self, step_index, pid, session, user_params, shared_mem_id, image_meta):
        image = read_image_from_shared_memory(shared_mem_id, image_meta, strict=True)
        red = (image[:, :, 0] == 255) & (image[:, :, 1] == 0) & (image[:, :, 2] == 0)
        ys, xs = np.nonzero(red)
        debug = {"shared_mem_id": shared_mem_id, "shm_seq": image_meta.get("shm_seq")}
        if len(xs) < int(user_params.get("min_pixels", 1)):
            return {"status": "OK", "data": {"result_status": "OK"}, "debug": debug}
        x, y = int(xs.min()), int(ys.min())
        rect = {
            "x": x,
            "y": y,
            "width": int(xs.max()) - x + 1,
            "height": int(ys.max()) - y + 1,
            "label": "marker",
            "score": 1.0,
        }
        data = {"result_status": "NG", "ng_reason": "marker found", "defect_rects": [rect]}
        return {"status": "OK", "data": data, "debug": debug}
