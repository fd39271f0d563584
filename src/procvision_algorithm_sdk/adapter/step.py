"""The `step` call: pre_execute, then execute unless pre answered ERROR, in one round trip."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .calls import CallHandler

__all__ = ["call_step"]


def call_step(
    handler: CallHandler, request_id: Any, fields: dict[str, Any], received: float
) -> dict[str, Any]:
    """Run pre, then execute unless pre answered ERROR; return the frame that ends the call.

    pre's frame is exactly what its own call would have answered. When pre is OK it is sent
    at once, marked `step_part: "pre"` (the Runner keeps it without waking its caller and
    starts execute's deadline), and execute's own frame ends the call. A pre that failed, or
    never reached the algorithm, ends the call itself. A handler without a pipe (no `send`)
    answers one frame holding both (`pre`, `execute`).
    """
    base = {k: v for k, v in fields.items() if k not in ("type", "phase", "request_id")}
    pre = handler.handle_call({**base, "request_id": request_id, "phase": "pre"}, received)
    if pre.get("type") != "result" or pre.get("status") != "OK":
        return pre
    send = getattr(handler, "send", None)
    if callable(send):
        send({**pre, "step_part": "pre"})
    base.pop("session_state", None)  # applied once, before pre; pre's changes stand
    started = time.perf_counter()
    execute = handler.handle_call({**base, "request_id": request_id, "phase": "execute"}, started)
    if callable(send):
        return execute
    return {
        "type": "result",
        "request_id": request_id,
        "phase": "step",
        "status": execute.get("status"),
        "pre": pre,
        "execute": execute,
        "restart_worker": bool(pre.get("restart_worker") or execute.get("restart_worker")),
    }
