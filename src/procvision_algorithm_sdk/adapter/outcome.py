"""What one call produced: Outcome, the exception mapping, and the result-contract check."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..contract import Problem, check_result, to_jsonable, verdict
from ..errors import (
    ALGORITHM_EXCEPTION,
    FatalError,
    ProcVisionError,
    is_retryable,
)
from ..logger import StructuredLogger
from .tracebacks import user_location, user_traceback

__all__ = ["Outcome", "evaluate_result", "exception_outcome", "json_safe"]

REPR_LIMIT = 2000

log = StructuredLogger()


def json_safe(value: Any, depth: int = 0) -> Any:
    """Return a JSON-ready copy of `value`; anything that is not plain JSON becomes its repr."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**63 else repr(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth < 50 and isinstance(value, dict):
        return {str(k): json_safe(v, depth + 1) for k, v in value.items()}
    if depth < 50 and isinstance(value, (list, tuple)):
        return [json_safe(v, depth + 1) for v in value]
    try:
        converted = to_jsonable(value)  # numpy scalars become numbers
        if not isinstance(converted, (dict, list)):
            return converted
    except Exception:
        pass
    try:
        text = repr(value)
    except Exception:
        text = f"<unrepresentable {type(value).__name__}>"
    return text if len(text) <= REPR_LIMIT else text[:REPR_LIMIT] + "...(truncated)"


def describe(exc: BaseException) -> str:
    """`Type: message` of an exception, or just its type when the message is empty."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class Outcome:
    """What one call produced, before it becomes a result frame."""

    status: str
    message: str = ""
    error_code: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    debug: Any = None
    extra: dict[str, Any] | None = None
    original: Any = None
    problems: list[dict[str, str]] | None = None
    retryable: bool = False
    restart_worker: bool = False

    def public(self) -> dict[str, Any]:
        """The outcome as the algorithm's on_step_finish hook sees it."""
        out: dict[str, Any] = {
            "status": self.status,
            "message": self.message,
            "error_code": self.error_code,
            "data": dict(self.data),
        }
        if self.debug is not None:
            out["debug"] = self.debug
        return out


def exception_outcome(exc: BaseException, what: str) -> Outcome:
    """Map an exception raised by algorithm code to an ERROR outcome (traceback to stderr)."""
    if isinstance(exc, ProcVisionError):
        code = str(exc.error_code)
        # A bare ProcVisionError("camera timeout", error_code="1005") is as retryable as 1005.
        retryable = bool(exc.retryable) or is_retryable(code)
    else:
        code = ALGORITHM_EXCEPTION
        retryable = False
    restart = isinstance(exc, FatalError)
    message = f"{what} raised {describe(exc)}"
    fields: dict[str, Any] = {"error_code": code, "phase": what}
    where = user_location(exc)
    if where is not None:
        fields["where"] = where
    # the algorithm's own frames only: the adapter's above and numpy's below are noise to its author
    log.error(message, traceback=user_traceback(exc), **fields)
    return Outcome(
        status="ERROR",
        message=message,
        error_code=code,
        retryable=retryable,
        restart_worker=restart,
    )


_RESULT_KEYS = ("status", "message", "error_code", "data", "debug")


_METHOD = {"pre": "pre_execute", "execute": "execute"}


def evaluate_result(
    raw: Any,
    kind: str,
    image_width: int | None,
    image_height: int | None,
    max_defects: int,
) -> Outcome:
    """Check an algorithm's pre_execute/execute return value against the contract."""

    def check(value: Any) -> list[Problem]:
        return check_result(value, kind, image_width, image_height, max_defects)

    # A result that passes as is is plain JSON already; only a failing one pays for conversion.
    value: Any = raw
    problems = check(raw)
    if problems:
        try:
            value = to_jsonable(raw)
        except TypeError:
            value = json_safe(raw)
        else:
            problems = check(value)
            if not problems:  # the one rule (validate, run, station): warn and convert
                method = _METHOD.get(kind, kind)
                log.warning(
                    f"{method} returned numpy values; converted to plain JSON numbers "
                    "(return int/float/str to silence this)",
                    phase=method,
                )
    refusal = verdict(problems, kind)
    if refusal is not None:
        return Outcome(
            status="ERROR",
            message=refusal.message,
            error_code=refusal.code,
            original=value,
            problems=[p.to_dict() for p in problems],
        )
    assert isinstance(value, dict)  # the checks refuse anything else
    extra = {k: v for k, v in value.items() if k not in _RESULT_KEYS}
    message = value.get("message")
    algorithm_code = value.get("error_code")
    return Outcome(
        status=value["status"],
        message=message if isinstance(message, str) else "",
        error_code=algorithm_code if algorithm_code is None else str(algorithm_code),
        data=dict(value.get("data") or {}),
        debug=value.get("debug"),
        extra=extra or None,
    )
