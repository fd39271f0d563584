"""`procvision-cli init --api execute-only`: the files of an execute-only (SDK 0.3.x) project."""

from __future__ import annotations

from string import Template

MAIN_TEMPLATE = Template('''\
"""The algorithm of this package (execute-only API): one execute on decoded images."""

from __future__ import annotations

from typing import Any

import numpy as np

from procvision_algorithm_sdk import BaseAlgorithm

DESCRIPTION = $description


class $class_name(BaseAlgorithm):
    """$class_name: execute(step_index, step_desc, cur_image, guide_image, guide_info)."""

    def __init__(self) -> None:
        super().__init__()
        # Load models here (or in setup()): the worker keeps this instance for every call.
        self.threshold = 40.0

    def execute(
        self,
        step_index: int,
        step_desc: str,
        cur_image: Any,
        guide_image: Any,
        guide_info: Any,
    ) -> dict[str, Any]:
        if cur_image is None or guide_image is None:
            return {"status": "ERROR", "message": "image is empty", "error_code": "1002"}
        # The arrays are valid only during this call: copy what you keep.
        height, width = int(cur_image.shape[0]), int(cur_image.shape[1])
        # >>> Write your algorithm here. Return plain Python values (int, float, str). <<<
        defects = []
        checked = []
        for item in guide_info or []:
            for pos in item.get("posList") or []:
                x, y = int(pos["x"]), int(pos["y"])
                w = min(int(pos["width"]), width - x)
                h = min(int(pos["height"]), height - y)
                if w <= 0 or h <= 0:
                    continue
                cur = cur_image[y : y + h, x : x + w].astype(np.int16)
                ref = guide_image[y : y + h, x : x + w].astype(np.int16)
                rect = {"x": x, "y": y, "width": w, "height": h, "label": str(item.get("label"))}
                checked.append(rect)
                if cur.shape == ref.shape and float(np.abs(cur - ref).mean()) > self.threshold:
                    defects.append(rect)
        data: dict[str, Any] = {
            "result_status": "NG" if defects else "OK",
            "defect_rects": defects[:20],
            "position_rects": checked[:20],
            "debug": {"step_index": step_index, "step_desc": step_desc},
        }
        if defects:
            data["ng_reason"] = "differs from the guide image"
        return {"status": "OK", "data": data}
''')

TEST_TEMPLATE = Template('''\
"""A first test of the algorithm: one execute on synthetic current and guide images."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from $module.main import $class_name  # noqa: E402


def test_execute_gives_a_verdict() -> None:
    algorithm = $class_name()
    guide = np.full((120, 160, 3), 128, np.uint8)
    info = [{"label": "1", "posList": [{"x": 10, "y": 10, "width": 40, "height": 30}]}]
    same = algorithm.execute(1, "step 1", guide.copy(), guide, info)
    assert same["status"] == "OK" and same["data"]["result_status"] == "OK"
    changed = guide.copy()
    changed[10:40, 10:50] = 0
    differs = algorithm.execute(1, "step 1", changed, guide, info)
    assert differs["data"]["result_status"] == "NG"
''')
