"""StructuredLogger: one JSON object per line on stderr, plus a bridge for stdlib logging."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, TextIO

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_write_lock = threading.Lock()


def _threshold() -> int:
    name = os.environ.get("PROC_LOG_LEVEL", "debug").strip().lower()
    if name == "warn":
        name = "warning"
    return LEVELS.get(name, LEVELS["debug"])


def _safe(value: Any) -> Any:
    """Return `value` if json can encode it, else its repr (a log call never raises)."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError, RecursionError):
        try:
            return repr(value)
        except Exception:
            return f"<unrepresentable {type(value).__name__}>"


def format_record(level: str, message: str, fields: dict[str, Any]) -> str:
    """Return the JSON line for one record (the seed's format)."""
    record: dict[str, Any] = {
        "level": level,
        "timestamp_ms": int(time.time() * 1000),
        "message": _safe(message) if not isinstance(message, str) else message,
    }
    for key, value in fields.items():
        if key in ("level", "timestamp_ms", "message"):
            key = f"field_{key}"
        record[str(key)] = _safe(value)
    try:
        return json.dumps(record, ensure_ascii=False)
    except (TypeError, ValueError):
        return json.dumps({k: repr(v) for k, v in record.items()}, ensure_ascii=False)


class StructuredLogger:
    """Writes `{"level", "timestamp_ms", "message", **fields}` JSON lines to a sink (stderr)."""

    def __init__(self, sink: TextIO | Callable[[str], Any] | None = None) -> None:
        self.sink = sink

    def _emit(self, level: str, message: str, fields: dict[str, Any]) -> None:
        if LEVELS[level] < _threshold():
            return
        exc_info = fields.pop("exc_info", None)
        if exc_info:
            if isinstance(exc_info, BaseException):
                tb = traceback.format_exception(type(exc_info), exc_info, exc_info.__traceback__)
            else:
                tb = traceback.format_exception(*sys.exc_info())
            fields["traceback"] = "".join(tb)
        line = format_record(level, message, fields) + "\n"
        sink = self.sink if self.sink is not None else sys.stderr
        try:
            with _write_lock:
                if callable(getattr(sink, "write", None)):
                    sink.write(line)  # type: ignore[union-attr]
                    flush = getattr(sink, "flush", None)
                    if flush is not None:
                        flush()
                elif callable(sink):
                    sink(line)
        except Exception:
            pass  # logging must never break the algorithm

    def debug(self, message: str, **fields: Any) -> None:
        """Log at debug level."""
        self._emit("debug", message, fields)

    def info(self, message: str, **fields: Any) -> None:
        """Log at info level."""
        self._emit("info", message, fields)

    def warning(self, message: str, **fields: Any) -> None:
        """Log at warning level."""
        self._emit("warning", message, fields)

    def error(self, message: str, **fields: Any) -> None:
        """Log at error level."""
        self._emit("error", message, fields)


class StructuredLogHandler(logging.Handler):
    """A stdlib logging handler that writes records as StructuredLogger JSON lines."""

    def __init__(self, logger: StructuredLogger | None = None) -> None:
        super().__init__()
        self._logger = logger or StructuredLogger()

    def emit(self, record: logging.LogRecord) -> None:
        """Write one stdlib record as a JSON line."""
        try:
            level = record.levelname.lower()
            level = {"critical": "error", "warn": "warning", "notset": "debug"}.get(level, level)
            if level not in LEVELS:
                level = "info"
            fields: dict[str, Any] = {"logger": record.name}
            if record.exc_info and record.exc_info[1] is not None:
                fields["exc_info"] = record.exc_info[1]
            self._logger._emit(level, record.getMessage(), fields)
        except Exception:
            self.handleError(record)


def install_logging_bridge(level: int = logging.INFO) -> StructuredLogHandler:
    """Route stdlib `logging` records (third-party libraries) to stderr as JSON lines."""
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, StructuredLogHandler):
            return handler
    handler = StructuredLogHandler()
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
    return handler
