"""The worker's log lines of each call (print, self.logger, tracebacks) for `run`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

__all__ = ["CallLogs", "format_entry", "log_entry", "print_logs"]

# The Runner hands every worker stderr record to this logger (procvision_runner.runner._on_log).
WORKER_LOGGER = "procvision.worker"
# The Runner's own operator log: what it says of a failed call is in that call's result already.
RUNNER_LOGGER = "procvision.runner"

# Tags the Runner adds to every record: who wrote it, not what the algorithm said.
_ROUTING = frozenset(
    {
        "level",
        "timestamp_ms",
        "message",
        "traceback",
        "where",
        "stream",
        "package",
        "version",
        "worker",
        "worker_pid",
        "session_id",
        "trace_id",
    }
)


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[dict[str, Any]] = []
        self.guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "procvision", None)
        if isinstance(fields, dict):
            with self.guard:
                self.records.append(fields)


class CallLogs:
    """The worker log records of a Runner, taken call by call (one Runner per process)."""

    def __init__(self) -> None:
        self._collector = _Collector()

    @contextmanager
    def capture(self) -> Iterator[CallLogs]:
        """Collect every worker record at every level while the block runs; restore after.

        Neither logger propagates meanwhile: `run` shows the records itself, once, instead of
        logging's last-resort handler printing warnings and errors a second time on stderr.
        """
        worker, runner = logging.getLogger(WORKER_LOGGER), logging.getLogger(RUNNER_LOGGER)
        saved = [(lg, lg.level, lg.propagate) for lg in (worker, runner)]
        for logger in (worker, runner):
            logger.addHandler(self._collector)
            logger.propagate = False
        worker.setLevel(logging.DEBUG)
        try:
            yield self
        finally:
            for logger, level, propagate in saved:
                logger.removeHandler(self._collector)
                logger.setLevel(level)
                logger.propagate = propagate

    def take(self, session_id: str | None) -> list[dict[str, Any]]:
        """The entries of `session_id` (None: of no session, as at start-up) received since the
        last take; the others are dropped."""
        with self._collector.guard:
            records, self._collector.records = self._collector.records, []
        return [log_entry(r) for r in records if r.get("session_id") == session_id]


def _time(timestamp_ms: Any) -> str | None:
    if not isinstance(timestamp_ms, (int, float)) or isinstance(timestamp_ms, bool):
        return None
    try:
        moment = datetime.fromtimestamp(timestamp_ms / 1000).astimezone()
    except (OverflowError, OSError, ValueError):
        return None
    return moment.isoformat(timespec="milliseconds")


def log_entry(record: dict[str, Any]) -> dict[str, Any]:
    """One record as `{level, time, message}`, plus traceback, where and the logger's fields."""
    entry: dict[str, Any] = {
        "level": str(record.get("level") or "info"),
        "time": _time(record.get("timestamp_ms")),
        "message": str(record.get("message", "")),
    }
    for key in ("traceback", "where"):
        if record.get(key):
            entry[key] = record[key]
    fields = {k: v for k, v in record.items() if k not in _ROUTING}
    if fields:
        entry["fields"] = fields
    return entry


def format_entry(entry: dict[str, Any], indent: str = "    ") -> list[str]:
    """Text lines of one entry: `HH:MM:SS.mmm LEVEL message k=v`, then its traceback."""
    time_text = (entry.get("time") or "")[11:23] or "--:--:--.---"
    fields = entry.get("fields") or {}
    extra = "".join(f" {k}={v}" for k, v in fields.items())
    lines = [f"{indent}{time_text} {entry['level'].upper():<7} {entry['message']}{extra}"]
    trace = entry.get("traceback")
    if isinstance(trace, str):
        lines.extend(f"{indent}  {line}" for line in trace.rstrip("\n").splitlines())
    return lines


def print_logs(entries: list[dict[str, Any]], say_none: bool = True) -> None:
    """Print a step's log entries under a `logs:` heading (`logs: none` if asked and none)."""
    if not entries:
        if say_none:
            print("  logs: none")
        return
    print("  logs:")
    for entry in entries:
        for line in format_entry(entry):
            print(line)
