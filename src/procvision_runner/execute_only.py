"""The Runner's side of the execute-only API (original SDK 0.3.x; contract section 11).

An execute-only call carries two frames (the current camera frame and the guide frame), a free
text `step_desc` and `guide_info` (where to look on the guide image). Both frames go through
slots of the worker's ring (one copy each; none for a leased SharedFrame), the call is one
`execute` (no pre phase, no session state, no user_params), and the result is the Runner's
usual dict, re-checked against the current frame's size.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from procvision_algorithm_sdk.errors import (
    IMAGE_LOAD_FAILED,
    INVALID_PARAMS,
    TIMEOUT,
    UNKNOWN_ERROR,
)
from procvision_algorithm_sdk.generation import EXECUTE_ONLY, LIFECYCLE
from procvision_algorithm_sdk.guide import check_guide_info
from procvision_algorithm_sdk.shared_memory import read_image_from_shared_memory

from . import legacy_transport
from .calls import COLOR_SPACES, CallRefused, PackageKey, StepCall, extra_meta, frame_problem
from .leases import SharedFrame
from .results import ms, to_result
from .worker import error_frame

if TYPE_CHECKING:
    from .call_path import CallPath
    from .pool import Pool

# The adapter checks the defect count against this; the Runner cuts to its own max_defects.
ADAPTER_DEFECT_LIMIT = 1_000_000
_GUIDE_ARGS = ("guide_frame", "step_desc", "guide_info", "guide_color_space")


def package_api(info: dict[str, Any] | None) -> str:
    """The API of a loaded package, from its get_info() (synthesized for execute-only)."""
    return EXECUTE_ONLY if isinstance(info, dict) and info.get("api") == EXECUTE_ONLY else LIFECYCLE


def lifecycle_refusal(name: str, version: str, call: StepCall) -> str | None:
    """Why execute-only arguments cannot go to a lifecycle package, or None if none were given."""
    passed = [arg for arg in _GUIDE_ARGS if getattr(call, arg) is not None]
    if not passed:
        return None
    return (
        f"{', '.join(passed)} belong to the execute-only API, but {name} {version} implements "
        "the lifecycle API (get_info, pre_execute, execute): pass user_params and a session"
    )


@dataclass(frozen=True)
class ExecuteOnlyCall:
    """A checked execute-only call, with what the worker is sent."""

    pid: str
    step_index: int
    frame: np.ndarray | SharedFrame
    guide_frame: np.ndarray | SharedFrame
    width: int
    height: int
    color_space: str
    guide_color_space: str
    extra_meta: dict[str, Any]
    step_desc: str
    guide_info: list[Any]
    session_id: str | None


def _space(name: str, value: Any) -> str | CallRefused:
    space = value.upper() if isinstance(value, str) else None
    if space not in COLOR_SPACES:
        return CallRefused(INVALID_PARAMS, f"{name} must be RGB, BGR or GRAY, not {value!r}")
    return space


def validate(raw: StepCall) -> ExecuteOnlyCall | CallRefused:
    """Check an execute-only call; CallRefused when refused before any worker sees it."""
    problem = frame_problem(raw.frame)
    if problem is not None:
        return CallRefused(IMAGE_LOAD_FAILED, problem)
    guide = raw.guide_frame
    if guide is None:
        return CallRefused(
            INVALID_PARAMS,
            "an execute-only package needs guide_frame (the reference image) with the frame",
        )
    problem = frame_problem(guide)
    if problem is not None:
        return CallRefused(IMAGE_LOAD_FAILED, f"guide_frame: {problem}")
    space = _space("color_space", raw.color_space)
    if isinstance(space, CallRefused):
        return space
    guide_space = _space("guide_color_space", raw.guide_color_space or raw.color_space)
    if isinstance(guide_space, CallRefused):
        return guide_space
    extra = extra_meta(raw.camera_id, raw.timestamp_ms)
    if isinstance(extra, CallRefused):
        return extra
    step_index = raw.step_index
    if not isinstance(step_index, int) or isinstance(step_index, bool) or step_index < 1:
        return CallRefused(
            INVALID_PARAMS, f"step_index must be an integer >= 1, not {step_index!r}"
        )
    if raw.user_params:
        return CallRefused(INVALID_PARAMS, "the execute-only API has no user_params (guide_info)")
    step_desc = "" if raw.step_desc is None else raw.step_desc
    if not isinstance(step_desc, str):
        return CallRefused(
            INVALID_PARAMS, f"step_desc must be a str, not {type(step_desc).__name__}"
        )
    guide_info = [] if raw.guide_info is None else raw.guide_info
    problems = check_guide_info(guide_info, int(guide.shape[1]), int(guide.shape[0]))
    if problems:
        text = "; ".join(f"{p.where}: {p.message}" for p in problems[:5])
        return CallRefused(problems[0].code, f"invalid guide_info: {text}")
    session_id = raw.session_id
    if session_id is not None and (not isinstance(session_id, str) or not session_id):
        return CallRefused(
            INVALID_PARAMS, f"session_id must be a non-empty str, not {session_id!r}"
        )
    return ExecuteOnlyCall(
        pid=raw.pid,
        step_index=step_index,
        frame=raw.frame,
        guide_frame=guide,
        width=int(raw.frame.shape[1]),
        height=int(raw.frame.shape[0]),
        color_space=space,
        guide_color_space=guide_space,
        extra_meta=extra,
        step_desc=step_desc,
        guide_info=list(guide_info),
        session_id=session_id,
    )


def _place(
    worker: Any, frame: Any, space: str, extra: dict[str, Any], timeout_s: float, slots: list[Any]
) -> tuple[str, dict[str, Any]]:
    """Put one frame where the worker reads it: a slot of its ring, a leased segment as is, or
    a file for a worker that kept the original SDK (removed when the call ends)."""
    if worker.frames_dir is not None:
        array = frame
        if isinstance(frame, SharedFrame):  # a leased buffer: its pixels, as RGB
            array = read_image_from_shared_memory(
                frame.name, frame.image_meta(space, {}), strict=True
            )
            space = "RGB"
        handle, name, meta = legacy_transport.write_frame(worker.frames_dir, array, space, extra)
        slots.append(handle)  # released like a slot: the file goes when the call ends
        return name, meta
    if isinstance(frame, SharedFrame):
        if frame.channels == 1:
            space = "GRAY"
        elif space == "GRAY":
            raise ValueError(f"color_space GRAY does not fit {frame.channels} channels")
        return frame.name, frame.image_meta(space, extra)
    slot = worker.ring.acquire(frame.nbytes, timeout_s)
    slots.append(slot)
    return slot.name, slot.write_frame(frame, space, **extra)


def _placement_error(exc: Exception, nbytes: int) -> dict[str, Any]:
    if isinstance(exc, OSError):  # /dev/shm full (ENOSPC) or out of memory: transient
        return error_frame(
            f"shared memory exhausted: cannot place {nbytes} bytes of frames "
            f"({os.strerror(exc.errno) if exc.errno else exc})",
            UNKNOWN_ERROR,
            retryable=True,
        )
    code = INVALID_PARAMS if isinstance(exc, ValueError) else TIMEOUT
    return error_frame(f"cannot place the frames in shared memory: {exc}", code)


def invoke(
    path: CallPath,
    pool: Pool,
    key: PackageKey,
    started: float,
    phases: tuple[str, ...],
    raw: StepCall,
) -> list[Any]:
    """The call path of an execute-only package; [None, result] for run_step."""

    def out(result: dict[str, Any]) -> list[Any]:
        # run_step answers {"pre_execute": None, "execute": result}: there is no pre phase.
        return [None, result] if len(phases) == 2 else [result]

    def refuse(frame: dict[str, Any]) -> list[Any]:
        return out(path.answer(raw.pid, key, "execute", frame, started)[0])

    if phases == ("pre",):
        message = f"{key.name} {key.version} is execute-only: it has no pre_execute"
        return refuse(error_frame(message, INVALID_PARAMS))
    unavailable = pool.unavailable()
    if unavailable is not None:
        return refuse(unavailable)
    call = validate(raw)
    if isinstance(call, CallRefused):
        return refuse(error_frame(call.message, call.code))
    return out(run(path, pool, key, call, started))


def run(path: CallPath, pool: Pool, key: PackageKey, call: ExecuteOnlyCall, started: float) -> dict:
    """Run one checked execute-only call on a worker of `pool`; the Runner's result dict."""
    config = path.config
    worker, error = pool.acquire(config.queue_timeout_ms / 1000, None)
    queue_ms = ms(time.perf_counter() - started)
    if worker is None:
        assert error is not None  # acquire() answers a worker or an error
        return path.answer(call.pid, key, "execute", error, started, {"queue_ms": queue_ms})[0]
    slots: list[Any] = []
    try:
        t_slot = time.perf_counter()
        try:
            wait_s = config.queue_timeout_ms / 1000
            cur = _place(worker, call.frame, call.color_space, call.extra_meta, wait_s, slots)
            guide = _place(
                worker, call.guide_frame, call.guide_color_space, call.extra_meta, wait_s, slots
            )
        except (TimeoutError, RuntimeError, ValueError, OSError) as exc:
            frame = _placement_error(exc, call.frame.nbytes + call.guide_frame.nbytes)
            return path.answer(call.pid, key, "execute", frame, started, {"queue_ms": queue_ms})[0]
        transfer_ms = ms(time.perf_counter() - t_slot)
        fields: dict[str, Any] = {
            "step_index": call.step_index,
            "step_desc": call.step_desc,
            "guide_info": call.guide_info,
            "cur_image_shm_id": cur[0],
            "cur_image_meta": cur[1],
            "guide_image_shm_id": guide[0],
            "guide_image_meta": guide[1],
            "max_defects": ADAPTER_DEFECT_LIMIT,
        }
        if call.session_id is not None:
            fields["session"] = {"id": call.session_id, "context": {}}  # tags the worker's logs
        answer = worker.call("execute", fields, config.execute_timeout_ms)
        timings = {"queue_ms": queue_ms, "transfer_ms": transfer_ms}
        result = to_result(
            answer,
            key,
            "execute",
            timings,
            started,
            config.max_defects,
            call.width,
            call.height,
            checked="contract:v1" in worker.capabilities,  # the adapter checked it already
        )
        path.observe(call.pid, key, "execute", result)
        if result["status"] == "OK":
            pool.call_succeeded()
        return result
    finally:
        for slot in slots:
            slot.release()
        pool.release(worker)
