"""A test algorithm whose behaviour is chosen per call through user_params["mode"].

Every hook appends one line to the file named by PROBE_LOG, so tests count calls exactly.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import time
from typing import Any

import numpy as np

from procvision_algorithm_sdk import (
    BaseAlgorithm,
    FatalError,
    GPUOutOfMemoryError,
    ProgramError,
    RecoverableError,
    Session,
    read_image_from_shared_memory,
)
from procvision_algorithm_sdk.errors import ProcVisionError
from procvision_algorithm_sdk.shared_memory import cached_segment_names

# Noise at import time: the adapter must already have moved the protocol away from fd 1.
print("probe: imported (print at import time)")
os.write(1, b"probe: raw write to fd 1 at import time\n")

_ERRORS: dict[str, type[BaseException]] = {
    "RecoverableError": RecoverableError,
    "FatalError": FatalError,
    "GPUOutOfMemoryError": GPUOutOfMemoryError,
    "ProgramError": ProgramError,
    "ValueError": ValueError,
}


def _record(line: str) -> None:
    path = os.environ.get("PROBE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def _pollute() -> dict[str, Any]:
    print("polluting with print")
    sys.stdout.write("polluting with sys.stdout.write\n")
    sys.stdout.flush()
    os.write(1, b"\x00\x00\x00\x05junk polluting with os.write(1)\n")
    libc = ctypes.CDLL(None)
    libc.printf(b"polluting with C printf\n")
    libc.fflush(None)
    logging.getLogger("thirdparty.lib").warning("third-party logging line")
    return {"stdin": sys.stdin.read()}


class Probe(BaseAlgorithm):
    """Records hooks, keeps state in the session and misbehaves on request."""

    def __init__(self) -> None:
        super().__init__()
        if os.environ.get("PROBE_CTOR_FAIL"):
            raise RuntimeError("constructor refused: PROBE_CTOR_FAIL is set")
        _record("init")

    def setup(self) -> None:
        _record("setup")
        if os.environ.get("PROBE_SETUP_FAIL"):
            raise FatalError("model file missing", error_code="1003")

    def teardown(self) -> None:
        _record("teardown")

    def on_step_start(self, step_index: int, session: Session, context: dict[str, Any]) -> None:
        _record(f"on_step_start {session.id} {step_index} {context.get('product_code', '')}")
        if session.get("fail_hook") == "start":
            raise RecoverableError("step start failed")

    def on_step_finish(self, step_index: int, session: Session, result: dict[str, Any]) -> None:
        _record(f"on_step_finish {session.id} {step_index} {result.get('status')}")

    def reset(self, session: Session) -> None:
        _record(f"reset {session.id}")

    def get_info(self) -> dict[str, Any]:
        return {
            "name": "probe",
            "version": "1.0.0",
            "supported_pids": ["P1", "P2"],
            "steps": [{"index": 1, "name": "one", "params": []}],
        }

    def _common(self, phase: str, session: Session, user_params: dict[str, Any]) -> Any:
        mode = user_params.get("mode", "ok")
        self.diagnostics.publish(f"{phase}_calls", 1)
        if mode == "sleep":
            time.sleep(float(user_params.get("seconds", 1.0)))
        elif mode == "raise":
            exc_type = _ERRORS[user_params["error"]]
            raise exc_type(f"requested {user_params['error']}")
        elif mode == "raise_code":
            exc_class = _ERRORS.get(user_params.get("error", ""), ProcVisionError)
            assert issubclass(exc_class, ProcVisionError)
            raise exc_class("requested a code", error_code=user_params["code"])
        elif mode == "set_hook_failure":
            session.set("fail_hook", user_params["hook"])
        return mode

    def pre_execute(
        self,
        step_index: int,
        pid: str,
        session: Session,
        user_params: dict[str, Any],
        shared_mem_id: str,
        image_meta: dict[str, Any],
    ) -> dict[str, Any]:
        mode = self._common("pre", session, user_params)
        if mode == "pre_error":
            return {"status": "ERROR", "message": "reference missing", "error_code": "1003"}
        session.set(f"pre_{step_index}", {"pid": pid, "seen": True})
        session.set("counter", session.get("counter", 0) + 1)
        return {"status": "OK", "message": "prepared", "data": {"calibration_rects": []}}

    def execute(
        self,
        step_index: int,
        pid: str,
        session: Session,
        user_params: dict[str, Any],
        shared_mem_id: str,
        image_meta: dict[str, Any],
    ) -> dict[str, Any]:
        mode = self._common("execute", session, user_params)
        data: dict[str, Any] = {
            "result_status": "OK",
            "from_pre": session.get(f"pre_{step_index}"),
            "counter": session.get("counter"),
        }
        if mode == "pollute":
            data.update(_pollute())
        elif mode == "image":
            data["cached_before_read"] = list(cached_segment_names())
            image = read_image_from_shared_memory(shared_mem_id, image_meta)
            data["shape"] = list(image.shape)
            data["sum"] = int(np.asarray(image, dtype=np.int64).sum())
        elif mode == "numpy":
            data["score"] = np.float32(0.5)
            data["count"] = np.int64(3)
        elif mode == "ndarray":
            data["mask"] = np.zeros((2, 2))
        elif mode == "bytes":
            data["blob"] = b"\x00\x01"
        elif mode == "ng_outside":
            return {
                "status": "OK",
                "data": {
                    "result_status": "NG",
                    "ng_reason": "scratch",
                    "defect_rects": [{"x": 90, "y": 90, "width": 50, "height": 50}],
                },
            }
        elif mode == "status_ng":
            return {"status": "NG", "data": {"result_status": "NG"}}
        elif mode == "not_dict":
            return "OK"  # type: ignore[return-value]
        elif mode == "error":
            return {
                "status": "ERROR",
                "message": "pid not supported",
                "error_code": "1001",
                "debug": {"pid": pid, "why": "not in list"},
                "data": {"hint": "check the pid"},
                "custom_top_level": 42,
            }
        elif mode == "delete":
            session.delete("counter")
        return {"status": "OK", "message": "done", "data": data, "debug": {"mode": mode}}
