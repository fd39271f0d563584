"""Execute-only (original SDK 0.3.x shape) algorithms for the adapter tests."""

from __future__ import annotations

import os
import sys

from procvision_algorithm_sdk import BaseAlgorithm


class Echo(BaseAlgorithm):
    """Reports what it was given; prints to stdout when step_desc says so; fails on request."""

    def execute(self, step_index, step_desc, cur_image, guide_image, guide_info):  # type: ignore[no-untyped-def]
        if step_desc == "print":
            print("hello from execute")  # what PROC_STRICT_STDIO=1 must catch
        if step_desc == "c-print":
            os.write(1, b"raw bytes on fd 1\n")
        if step_desc == "raise":
            raise RuntimeError("asked to fail")
        if step_desc == "refuse":
            return {
                "status": "ERROR",
                "message": "guide image not usable",
                "error_code": "E-CAM-7",
                "debug": {"why": "asked", "step": step_index},
            }
        if step_desc == "bad-rect":
            return {
                "status": "OK",
                "data": {
                    "result_status": "NG",
                    "ng_reason": "outside",
                    "defect_rects": [{"x": 0, "y": 0, "width": 10**6, "height": 5}],
                },
            }
        return {
            "status": "OK",
            "debug": {"top": "level"},
            "data": {
                "result_status": "OK",
                "debug": {
                    "step_index": step_index,
                    "step_desc": step_desc,
                    "guide_info": guide_info,
                    "cur": [
                        list(cur_image.shape),
                        int(cur_image[0, 0, 0]),
                        bool(cur_image.flags.writeable),
                    ],
                    "guide": [list(guide_image.shape), int(guide_image[0, 0, 0])],
                    "cur_is_view": cur_image.base is not None,
                    "stdout_is_tty": sys.stdout.isatty(),
                },
            },
        }


class Renamed(BaseAlgorithm):
    """The execute-only shape under other parameter names (told by its arity)."""

    def execute(self, idx, desc, img, ref, info):  # type: ignore[no-untyped-def]
        return {"status": "OK", "data": {"result_status": "OK", "debug": {"desc": desc}}}


class NoShape(BaseAlgorithm):
    """Implements neither API: must be refused with both shapes named."""

    def setup(self) -> None:
        pass
