"""What goes back to the Runner after a call: the result frame, diagnostics, stdout pollution."""

from __future__ import annotations

import time
from typing import Any

from .. import protocol
from ..errors import PROTOCOL_ERROR
from .outcome import Outcome, describe, json_safe, log
from .sessions import SessionEntry
from .strict_stdio import StdoutGuard

__all__ = ["result_frame", "stdout_pollution", "take_diagnostics"]


def stdout_pollution(guard: StdoutGuard | None, method: str) -> str | None:
    """Under PROC_STRICT_STDIO=1: why a call that wrote to stdout failed, else None."""
    if guard is None:
        return None
    written, preview = guard.end()
    if not written:
        return None
    text = (
        f"stdout pollution: {method} wrote {written} bytes to stdout under "
        "PROC_STRICT_STDIO=1; log to stderr or through StructuredLogger"
    )
    log.error(text, error_code=PROTOCOL_ERROR, sample=preview[:500].decode("utf-8", "replace"))
    return text


def take_diagnostics(algorithm: Any) -> dict[str, Any]:
    """What the algorithm published to its Diagnostics since the last call (then cleared)."""
    diagnostics = getattr(algorithm, "diagnostics", None)
    getter = getattr(diagnostics, "get", None)
    if not callable(getter):
        return {}
    try:
        items = getter()
        clear = getattr(diagnostics, "clear", None)
        if callable(clear):
            clear()
    except Exception as exc:
        log.warning("diagnostics could not be collected", error=describe(exc))
        return {}
    if type(items) is dict and not items:
        return {}  # the common case: nothing published since the last call
    return json_safe(items) if isinstance(items, dict) else {"value": json_safe(items)}


def result_frame(
    algorithm: Any,
    request_id: Any,
    phase: str,
    step_index: int | None,
    outcome: Outcome,
    entry: SessionEntry | None,
    timings: dict[str, float],
    received: float,
) -> dict[str, Any]:
    """The `result` frame that ends a call: timings, the session delta and the algorithm's
    diagnostics since the last call included."""
    data = dict(outcome.data)
    data["phase"] = phase
    data["step_index"] = step_index
    extra: dict[str, Any] = {}
    if outcome.original is not None:
        extra["original"] = outcome.original
    if outcome.problems:
        extra["problems"] = outcome.problems
    if outcome.extra:
        extra["extra"] = outcome.extra
    timings["worker_ms"] = (time.perf_counter() - received) * 1000.0
    return protocol.result(
        request_id,
        outcome.status,
        outcome.message,
        outcome.error_code,
        data,
        debug=outcome.debug,
        diagnostics=take_diagnostics(algorithm),
        timings={k: round(v, 3) for k, v in timings.items()},
        session_id=entry.session.id if entry is not None else None,
        session_delta=entry.session._take_changes() if entry is not None else None,
        retryable=outcome.retryable,
        restart_worker=outcome.restart_worker,
        **extra,
    )
