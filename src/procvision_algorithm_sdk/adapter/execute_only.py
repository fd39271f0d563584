"""The adapter's side of the execute-only API (original SDK 0.3.x; contract section 11).

The host's frame has no phase: `{"type": "call", "request_id", "data": {step_index, step_desc,
guide_info, cur_image_shm_id, cur_image_meta, guide_image_shm_id, guide_image_meta}}` (fields may
also sit at the top level; `data` wins). Both images are read with the seed reader, so a segment
of ours is a zero-copy view and a legacy frame file works too. The answer is our usual result
frame (the algorithm's `error_code` and `debug` forwarded), after the usual result checks.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .. import protocol
from ..errors import INVALID_PARAMS, PROTOCOL_ERROR
from ..generation import read_manifest, synthesized_info
from ..shared_memory import read_image_from_shared_memory
from . import reply
from .outcome import Outcome, evaluate_result, exception_outcome
from .prefetch import prefetch_image

# The CallHandler that runs this (typed loosely: calls imports this module, not the reverse).
CallHandler = Any

# Phases of the lifecycle API that have no meaning for an execute-only algorithm.
_LIFECYCLE_ONLY_PHASES = ("pre", "reset", "on_step_start", "on_step_finish")
_DEFAULT_MAX_DEFECTS = 20


def _step_index(value: Any) -> int | None:
    """The original adapter's rule: missing or empty means step 1."""
    if value is None or value == "":
        return 1
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def handle(worker: CallHandler, message: dict[str, Any], received: float) -> dict[str, Any] | None:
    """Answer one call to an execute-only algorithm; None lets the common path run it."""
    request_id = message.get("request_id")
    fields = protocol.call_fields(message)
    phase = fields.get("phase")
    if phase in ("setup", "teardown"):
        return None  # our optional hooks: the common path runs them once
    if phase == "info":
        info = synthesized_info(
            read_manifest(worker.root or Path.cwd()), type(worker.algorithm).__name__
        )
        return reply.result_frame(
            worker.algorithm,
            request_id,
            "info",
            None,
            Outcome("OK", data={"info": info}),
            None,
            {},
            received,
        )
    if phase in _LIFECYCLE_ONLY_PHASES:
        return protocol.error(
            request_id,
            f"phase {phase!r} is not part of the execute-only API (send a call without phase)",
            PROTOCOL_ERROR,
        )
    if phase not in (None, "execute"):
        return None  # an unknown phase: the common path refuses it
    return _execute(worker, request_id, fields, received)


def _execute(
    worker: CallHandler, request_id: Any, fields: dict[str, Any], received: float
) -> dict[str, Any]:

    step_index = _step_index(fields.get("step_index"))
    if step_index is None:
        return protocol.error(
            request_id,
            f"step_index must be an integer, got {fields.get('step_index')!r}"[:2000],
            PROTOCOL_ERROR,
        )
    step_desc = fields.get("step_desc")
    if step_desc is None:
        step_desc = ""
    if not isinstance(step_desc, str):
        return protocol.error(request_id, "step_desc must be a string", INVALID_PARAMS)
    guide_info = fields.get("guide_info")
    if guide_info is None:
        guide_info = []
    cur_id, guide_id = fields.get("cur_image_shm_id"), fields.get("guide_image_shm_id")
    if not cur_id or not guide_id or not isinstance(cur_id, str) or not isinstance(guide_id, str):
        return protocol.error(
            request_id,
            "an execute-only call needs both cur_image_shm_id and guide_image_shm_id",
            INVALID_PARAMS,
        )
    cur_meta = fields.get("cur_image_meta")
    guide_meta = fields.get("guide_image_meta")
    cur_meta = cur_meta if isinstance(cur_meta, dict) else {}
    guide_meta = guide_meta if isinstance(guide_meta, dict) else {}
    if worker.torn_down:
        return protocol.error(
            request_id, "the worker has been torn down; send shutdown", PROTOCOL_ERROR
        )
    timings: dict[str, float] = {"algorithm_ms": 0.0}
    ran_now = not worker.setup_done
    failure, setup_ms = worker.ensure_setup()
    if ran_now:
        timings["setup_ms"] = setup_ms
    if failure is not None:
        outcome: Outcome = worker._setup_failed_again()
        return reply.result_frame(
            worker.algorithm, request_id, "execute", step_index, outcome, None, timings, received
        )
    start = time.perf_counter()
    prefetch_image(cur_id)
    prefetch_image(guide_id)
    timings["attach_ms"] = (time.perf_counter() - start) * 1000.0
    try:
        cur_image = read_image_from_shared_memory(cur_id, cur_meta)
        guide_image = read_image_from_shared_memory(guide_id, guide_meta)
    except Exception as load_error:  # strict image mode: ImageLoadError (1002)
        outcome = exception_outcome(load_error, "read_image_from_shared_memory")
        return reply.result_frame(
            worker.algorithm, request_id, "execute", step_index, outcome, None, timings, received
        )
    if worker.stdout_guard is not None:
        worker.stdout_guard.begin()
    raw, exc, ms = worker._run("execute", step_index, step_desc, cur_image, guide_image, guide_info)
    timings["algorithm_ms"] = ms
    polluted = worker._stdout_pollution("execute")
    if polluted is not None:
        # The original adapter's answer: an error frame, not a result.
        return protocol.error(request_id, polluted, PROTOCOL_ERROR)
    if exc is not None:
        outcome = exception_outcome(exc, "execute")
    else:
        height, width = _geometry(cur_image, cur_meta)
        limit = fields.get("max_defects")
        outcome = evaluate_result(
            raw,
            "execute",
            width,
            height,
            limit
            if isinstance(limit, int) and not isinstance(limit, bool)
            else _DEFAULT_MAX_DEFECTS,
        )
    return reply.result_frame(
        worker.algorithm, request_id, "execute", step_index, outcome, None, timings, received
    )


def _geometry(image: Any, meta: dict[str, Any]) -> tuple[int | None, int | None]:
    """Height and width that bound the result's rects: the image read, else the meta's."""
    shape = getattr(image, "shape", None)
    if isinstance(shape, tuple) and len(shape) >= 2:
        return int(shape[0]), int(shape[1])
    height, width = meta.get("height"), meta.get("width")
    return (
        height if isinstance(height, int) and height > 0 else None,
        width if isinstance(width, int) and width > 0 else None,
    )
