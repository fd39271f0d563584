"""What callers get: a worker's frame as the Runner's result dict, re-checked; CallRecord."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from procvision_algorithm_sdk import protocol
from procvision_algorithm_sdk.contract import check_result, verdict
from procvision_algorithm_sdk.errors import TIMEOUT, is_retryable

from .calls import PackageKey

__all__ = ["CallRecord", "call_record", "error_frame", "ms", "recheck", "to_result"]

log = logging.getLogger("procvision.runner")


@dataclass(frozen=True)
class CallRecord:
    """One answered phase, for metrics observers."""

    pid: str
    name: str | None
    version: str | None
    phase: str
    status: str
    error_code: str | None
    queue_ms: float
    transfer_ms: float
    algorithm_ms: float
    total_ms: float
    step_index: int | None = None
    result_status: str | None = None  # the execute verdict ("OK"/"NG"); None for other phases


def error_frame(message: str, code: str, **extra: Any) -> dict[str, Any]:
    """A result-shaped frame for failures the Runner itself detects."""
    frame = protocol.result(None, "ERROR", message, code, {})
    frame.update(extra)
    return frame


def ms(seconds: float) -> float:
    """Seconds as milliseconds rounded to microseconds."""
    return round(seconds * 1000.0, 3)


def to_result(
    frame: dict[str, Any],
    key: PackageKey | None,
    phase: str,
    timings: dict[str, float],
    started: float,
    max_defects: int,
    width: int | None = None,
    height: int | None = None,
    *,
    checked: bool = False,
) -> dict[str, Any]:
    """Turn a result frame into the plain result dict callers get, re-checking it.

    `checked`: the worker's adapter checked the result contract itself (it said so in its
    hello: `contract:v1`); then only what the Runner alone decides (max_defects) is applied.
    """
    data = frame.get("data")
    result: dict[str, Any] = {
        "status": frame.get("status") if frame.get("status") in ("OK", "ERROR") else "ERROR",
        "message": frame.get("message") or "",
        "error_code": None if frame.get("error_code") is None else str(frame["error_code"]),
        "data": dict(data) if isinstance(data, dict) else {},
        "debug": frame.get("debug"),
        "diagnostics": frame.get("diagnostics") or {},
        "warnings": [],
    }
    for extra in ("original", "problems", "extra"):
        if extra in frame:
            result[extra] = frame[extra]
    worker_timings = frame.get("timings") if isinstance(frame.get("timings"), dict) else {}
    if frame.get("request_id") is not None and result["status"] == "OK":
        recheck(result, phase, width, height, max_defects, full=not checked)
    if result["status"] == "ERROR" and frame.get("type") == "error" and not result["error_code"]:
        result["error_code"] = TIMEOUT
    code = result["error_code"]
    retry = frame.get("retryable")
    result["retryable"] = bool(retry) if retry is not None else is_retryable(code)
    if result["status"] == "OK":
        result["retryable"] = False
    all_timings = {k: v for k, v in (worker_timings or {}).items() if k != "algorithm_ms"}
    all_timings.update(
        queue_ms=timings.get("queue_ms", 0.0),
        transfer_ms=timings.get("transfer_ms", 0.0),
        algorithm_ms=float((worker_timings or {}).get("algorithm_ms") or 0.0),
        total_ms=ms(time.perf_counter() - started),
    )
    result["timings"] = all_timings
    result["package"] = {"name": key.name, "version": key.version} if key else None
    return result


def recheck(
    result: dict[str, Any],
    phase: str,
    width: int | None,
    height: int | None,
    limit: int,
    *,
    full: bool = True,
) -> None:
    """Cut defect_rects beyond `limit` with a warning; with `full`, check the contract again."""
    data = {k: v for k, v in result["data"].items() if k not in ("phase", "step_index")}
    rects = data.get("defect_rects")
    if phase == "execute" and isinstance(rects, list) and len(rects) > limit:
        warning = f"defect_rects cut from {len(rects)} to max_defects={limit}"
        result["warnings"].append(warning)
        log.warning("%s", warning)
        data["defect_rects"] = rects[:limit]
        result["data"]["defect_rects"] = rects[:limit]
    if not full:
        return
    view = {
        "status": result["status"],
        "message": result["message"],
        "error_code": result["error_code"],
        "data": data,
    }
    if result["debug"] is not None:
        view["debug"] = result["debug"]
    problems = (
        check_result(view, phase, width, height, limit) if phase in ("pre", "execute") else []
    )
    refusal = verdict(problems, phase)
    if refusal is not None:
        result["original"] = dict(view)
        result["problems"] = [p.to_dict() for p in problems]
        result["status"] = "ERROR"
        result["error_code"] = refusal.code
        result["message"] = refusal.message


def call_record(pid: str, key: PackageKey | None, phase: str, result: dict[str, Any]) -> CallRecord:
    """The CallRecord observers get for one answered phase."""
    timings = result.get("timings") or {}
    raw_data = result.get("data")
    data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
    step = data.get("step_index")
    verdict = data.get("result_status") if phase == "execute" else None
    return CallRecord(
        pid=pid,
        name=key.name if key else None,
        version=key.version if key else None,
        phase=phase,
        status=result.get("status", "ERROR"),
        error_code=result.get("error_code"),
        queue_ms=float(timings.get("queue_ms", 0.0)),
        transfer_ms=float(timings.get("transfer_ms", 0.0)),
        algorithm_ms=float(timings.get("algorithm_ms", 0.0)),
        total_ms=float(timings.get("total_ms", 0.0)),
        step_index=step if isinstance(step, int) and not isinstance(step, bool) else None,
        result_status=verdict if verdict in ("OK", "NG") else None,
    )
