"""Part presence, written the way a field team writes an execute-only (SDK 0.3.x) package.

The guide image shows the assembly as it must look after this step; `guide_info` lists where
each part sits (`[{"label": "1", "posList": [{"x", "y", "width", "height"}]}]`). A part is
present when the current image, inside its rectangle, looks like the guide image there.
"""

from typing import Any

import numpy as np

from procvision_algorithm_sdk import BaseAlgorithm

# Mean absolute difference (0..255) between the current and the guide patch above which a part
# counts as missing. Lighting drift on the station stays under 15; an empty seat is above 60.
MISSING_THRESHOLD = 35.0


class PartPresenceAlgorithm(BaseAlgorithm):
    def __init__(self) -> None:
        super().__init__()
        self.threshold = MISSING_THRESHOLD
        self._model_version = "mad-v1"
        self._resources_loaded = True

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
        if cur_image.shape != guide_image.shape:
            return {
                "status": "ERROR",
                "message": "current and guide images differ in size",
                "error_code": "1002",
                "debug": {
                    "cur_shape": list(cur_image.shape),
                    "guide_shape": list(guide_image.shape),
                },
            }
        if not guide_info:
            return {
                "status": "ERROR",
                "message": "guide_info lists no position to check",
                "error_code": "1006",
                "debug": {"step_index": step_index, "step_desc": step_desc},
            }
        height, width = cur_image.shape[:2]
        checked: list[dict[str, Any]] = []
        missing: list[dict[str, Any]] = []
        scores: dict[str, float] = {}
        for item in guide_info:
            label = str(item.get("label", ""))
            for number, pos in enumerate(item.get("posList") or []):
                x, y = int(pos["x"]), int(pos["y"])
                w, h = int(pos["width"]), int(pos["height"])
                x2, y2 = min(x + w, width), min(y + h, height)
                cur = cur_image[y:y2, x:x2].astype(np.int16)
                ref = guide_image[y:y2, x:x2].astype(np.int16)
                score = float(np.abs(cur - ref).mean())
                name = label if number == 0 else f"{label}.{number + 1}"
                scores[name] = round(score, 2)
                rect = {"x": x, "y": y, "width": x2 - x, "height": y2 - y, "label": name}
                checked.append(rect)
                if score > self.threshold:
                    missing.append(dict(rect, score=round(min(score / 255.0, 1.0), 3)))
        self.diagnostics.publish("positions_checked", len(checked))
        debug = {"step_desc": step_desc, "scores": scores, "threshold": self.threshold}
        if missing:
            labels = ",".join(r["label"] for r in missing)
            return {
                "status": "OK",
                "data": {
                    "result_status": "NG",
                    "ng_reason": f"part missing at {labels}"[:49],
                    "defect_rects": missing[:20],
                    "position_rects": checked[:20],
                    "debug": debug,
                },
            }
        return {
            "status": "OK",
            "data": {
                "result_status": "OK",
                "defect_rects": [],
                "position_rects": checked[:20],
                "debug": debug,
            },
        }
