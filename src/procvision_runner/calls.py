"""One call into the Runner as a value: StepCall as given; validate_call() -> ValidCall or refusal.

The checks run in the order the Runner always ran them (frame, colour space, camera id, timestamp,
step index, step lookup, user params, session id, session context), so the first problem a caller
sees is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from procvision_algorithm_sdk.contract import (
    find_step,
    find_unjsonable,
    to_jsonable,
    validate_user_params,
)
from procvision_algorithm_sdk.errors import IMAGE_LOAD_FAILED, INVALID_PARAMS

from .leases import SharedFrame

__all__ = ["CallRefused", "PackageKey", "StepCall", "ValidCall", "validate_call"]

COLOR_SPACES = ("RGB", "BGR", "GRAY")


class PackageKey(NamedTuple):
    """A loaded package version."""

    name: str
    version: str


@dataclass(frozen=True)
class StepCall:
    """The arguments of run_step / pre_execute / execute, exactly as the caller passed them."""

    pid: Any
    step_index: Any
    frame: Any
    user_params: Any = None
    session_id: Any = None
    session_context: Any = None
    color_space: Any = "RGB"
    camera_id: Any = None
    timestamp_ms: Any = None
    # the execute-only API's inputs (contract section 11); None for a lifecycle call
    guide_frame: Any = None
    step_desc: Any = None
    guide_info: Any = None
    guide_color_space: Any = None


@dataclass(frozen=True)
class ValidCall:
    """A StepCall that passed every check, with the values the worker is sent."""

    pid: str
    step_index: int
    frame: np.ndarray | SharedFrame  # a SharedFrame is already in a leased segment
    width: int
    height: int
    color_space: str
    extra_meta: dict[str, Any]  # camera_id / timestamp_ms for image_meta, when given
    params: dict[str, Any]  # user_params with the step's defaults applied
    session_id: str | None
    session_context: dict[str, Any] | None


class CallRefused(NamedTuple):
    """Why a call is refused before any worker sees it."""

    code: str
    message: str


def validate_call(
    call: StepCall, info: Mapping[str, Any], key: tuple[str, str]
) -> ValidCall | CallRefused:
    """Check a call routed to package `key` (whose get_info() is `info`)."""
    problem = frame_problem(call.frame)
    if problem is not None:
        return CallRefused(IMAGE_LOAD_FAILED, problem)
    frame: np.ndarray | SharedFrame = call.frame
    height, width = int(frame.shape[0]), int(frame.shape[1])
    color_space = call.color_space
    space = color_space.upper() if isinstance(color_space, str) else None
    if space not in COLOR_SPACES:
        return CallRefused(
            INVALID_PARAMS, f"color_space must be RGB, BGR or GRAY, not {color_space!r}"
        )
    meta = extra_meta(call.camera_id, call.timestamp_ms)
    if isinstance(meta, CallRefused):
        return meta
    step_index = call.step_index
    # 0 is the original init's numbering (legacy, passed on unchanged); negatives never were.
    if not isinstance(step_index, int) or isinstance(step_index, bool) or step_index < 0:
        return CallRefused(
            INVALID_PARAMS,
            f"step_index must be an integer >= 1 (0: legacy numbering), not {step_index!r}",
        )
    specs: Any = []
    if isinstance(info.get("steps"), list) and info["steps"]:
        step = find_step(info, step_index)
        if step is None:
            return CallRefused(
                INVALID_PARAMS, f"step {step_index} is not defined by {key[0]} {key[1]}"
            )
        specs = step.get("params") or []
    # Plain JSON first, so a numpy scalar for a declared param validates like its Python twin.
    user_params = call.user_params
    plain, unjsonable = plain_json({} if user_params is None else user_params, "user_params")
    if unjsonable is not None:
        return CallRefused(INVALID_PARAMS, unjsonable)
    params, problems = validate_user_params(specs, plain, width, height)
    if problems:
        text = "; ".join(f"{p.where}: {p.message}" for p in problems[:5])
        return CallRefused(problems[0].code, f"invalid user_params: {text}")
    session = _session(call.session_id, call.session_context)
    if isinstance(session, CallRefused):
        return session
    return ValidCall(
        pid=call.pid,
        step_index=step_index,
        frame=frame,
        width=width,
        height=height,
        color_space=space,
        extra_meta=meta,
        params=params,
        session_id=session[0],
        session_context=session[1],
    )


def extra_meta(camera_id: Any, timestamp_ms: Any) -> dict[str, Any] | CallRefused:
    extra_meta: dict[str, Any] = {}
    if camera_id is not None:
        if not isinstance(camera_id, (str, int)) or isinstance(camera_id, bool):
            return CallRefused(INVALID_PARAMS, f"camera_id must be a str, not {camera_id!r}")
        extra_meta["camera_id"] = camera_id
    if timestamp_ms is not None:
        if not isinstance(timestamp_ms, int) or isinstance(timestamp_ms, bool):
            return CallRefused(INVALID_PARAMS, f"timestamp_ms must be an int, not {timestamp_ms!r}")
        extra_meta["timestamp_ms"] = timestamp_ms
    return extra_meta


def _session(
    session_id: Any, session_context: Any
) -> tuple[str | None, dict[str, Any] | None] | CallRefused:
    if session_id is not None and (not isinstance(session_id, str) or not session_id):
        return CallRefused(
            INVALID_PARAMS, f"session_id must be a non-empty str, not {session_id!r}"
        )
    if session_context is not None and not isinstance(session_context, dict):
        return CallRefused(INVALID_PARAMS, "session_context must be a dict")
    if session_context is not None:
        session_context, unjsonable = plain_json(session_context, "session_context")
        if unjsonable is not None:
            return CallRefused(INVALID_PARAMS, unjsonable)
    return session_id, session_context


def plain_json(value: Any, where: str) -> tuple[Any, str | None]:
    """Return `value` as plain JSON (numpy scalars converted), or why it cannot be sent."""
    if not find_unjsonable(value, where):
        return value, None
    try:
        return to_jsonable(value), None
    except (TypeError, ValueError, RecursionError) as exc:
        return None, f"{where} is not plain JSON: {exc}"


def frame_problem(frame: Any) -> str | None:
    """Why `frame` is not an H x W x 3 (or H x W, H x W x 1) uint8 ndarray, or None."""
    if isinstance(frame, SharedFrame):
        return None  # checked against its segment header when the lease was checked out
    if not isinstance(frame, np.ndarray):
        return f"frame must be a numpy ndarray, not {type(frame).__name__}"
    if frame.dtype != np.uint8:
        return f"frame must have dtype uint8, not {frame.dtype}"
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3)):
        return f"frame must be H x W x 3 or H x W, not shape {frame.shape}"
    if frame.size == 0:
        return f"frame is empty (shape {frame.shape})"
    return None
