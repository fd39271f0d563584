"""An algorithm written exactly like the seed era's example: random rects, step 1 NG,
`debug` at the top of the pre_execute result, time.time() latency in debug."""

import random
import time

from procvision_algorithm_sdk import BaseAlgorithm, read_image_from_shared_memory


class AlgorithmExample(BaseAlgorithm):
    def __init__(self):
        super().__init__()
        self._supported_pids = ["A01", "A02"]

    def setup(self):
        self._model_version = "example_v1"
        self._resources_loaded = True

    def teardown(self):
        self._resources_loaded = False

    def on_step_start(self, step_index, session, context):
        session.set("step_start_ms", int(time.time() * 1000))

    def on_step_finish(self, step_index, session, result):
        start = session.get("step_start_ms")
        if start is not None:
            self.diagnostics.publish("step_latency_ms", int(time.time() * 1000) - start)

    def reset(self, session):
        session.delete("step_start_ms")

    def get_info(self):
        return {
            "name": "algorithm-example",
            "version": "1.0",
            "description": "seed example",
            "supported_pids": self._supported_pids,
            "steps": [
                {
                    "index": 1,
                    "name": "locate",
                    "params": [
                        {
                            "key": "threshold",
                            "type": "float",
                            "default": 0.5,
                            "min": 0.0,
                            "max": 1.0,
                        }
                    ],
                },
                {
                    "index": 2,
                    "name": "inspect",
                    "params": [
                        {
                            "key": "mode",
                            "type": "enum",
                            "choices": ["fast", "slow"],
                            "default": "fast",
                        }
                    ],
                },
            ],
        }

    def pre_execute(self, step_index, pid, session, user_params, shared_mem_id, image_meta):
        if pid not in self._supported_pids:
            return {"status": "ERROR", "message": f"unsupported pid {pid}", "error_code": "1001"}
        img = read_image_from_shared_memory(shared_mem_id, image_meta)
        if img is None:
            return {"status": "ERROR", "message": "image load failed", "error_code": "1002"}
        return {
            "status": "OK",
            "message": "ready",
            "data": {
                "calibration_rects": [{"x": 10, "y": 10, "width": 50, "height": 50, "label": "ref"}]
            },
            "debug": {"latency_ms": 0.0},
        }

    def execute(self, step_index, pid, session, user_params, shared_mem_id, image_meta):
        start = time.time()
        img = read_image_from_shared_memory(shared_mem_id, image_meta)
        if img is None:
            return {"status": "ERROR", "message": "image load failed", "error_code": "1002"}
        h, w = img.shape[:2]
        if step_index == 1:
            x = random.randint(0, max(0, w - 40))
            y = random.randint(0, max(0, h - 40))
            return {
                "status": "OK",
                "data": {
                    "result_status": "NG",
                    "ng_reason": "scratch found",
                    "defect_rects": [
                        {
                            "x": x,
                            "y": y,
                            "width": 40,
                            "height": 40,
                            "label": "scratch",
                            "score": round(random.random(), 3),
                        }
                    ],
                    "debug": {"latency_ms": (time.time() - start) * 1000.0},
                },
            }
        return {
            "status": "OK",
            "data": {
                "result_status": "OK",
                "defect_rects": [],
                "position_rects": [{"x": 0, "y": 0, "width": w, "height": h}],
                "debug": {"latency_ms": (time.time() - start) * 1000.0},
            },
        }
