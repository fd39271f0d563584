"""The server's one log: JSON lines of one schema, to stderr or to a rotating file.

Every record, the Runner's, uvicorn's, the workers' relayed lines and the access lines, goes
through the root logger's one handler as `{"time", "level", "logger", "message", ...fields}`:
`time` ISO 8601 in UTC, `level` lower case (the SDK's levels), then the record's own fields
(`extra=`), e.g. method, path, status and duration_ms for an access line. Formatting is
python-json-logger's; only the schema's names and the level's case are set here.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pythonjsonlogger.json import JsonFormatter

__all__ = ["LogSettings", "configure_logging"]

_FORMAT = "{levelname}{name}{message}"
_RENAME = {"levelname": "level", "name": "logger", "exc_info": "traceback"}


class _Formatter(JsonFormatter):
    """python-json-logger's formatter with the schema's key order and a lower-case level."""

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        """Put `time` first and lower-case the level (`warning`, `error`, ...)."""
        level = str(log_data.get("level", "")).lower()
        log_data["level"] = {"critical": "error", "warn": "warning"}.get(level, level)
        return {"time": log_data.pop("time", None), **log_data}


@dataclass(frozen=True)
class LogSettings:
    """Where the log goes: stderr, or `file` rotated at `max_bytes` keeping `backup_count`."""

    level: str = "info"
    file: str | None = None
    max_bytes: int = 10 * 1024**2
    backup_count: int = 5


def _handler(settings: LogSettings) -> logging.Handler:
    """The one handler (OSError when the file cannot be opened)."""
    if settings.file is None:
        return logging.StreamHandler(sys.stderr)
    path = Path(settings.file)
    path.parent.mkdir(parents=True, exist_ok=True)
    return logging.handlers.RotatingFileHandler(
        path,
        maxBytes=settings.max_bytes,
        backupCount=settings.backup_count,
        encoding="utf-8",
    )


def configure_logging(settings: LogSettings) -> Callable[[], None]:
    """Send every record to one JSON-lines handler; returns the undo (closes the handler).

    The root logger's handlers are replaced for the server's life and put back by the undo,
    so a server run inside another program (tests, the Ray node) leaves its logging as it was.
    """
    root = logging.getLogger()
    if any(getattr(h, "procvision_log", False) for h in root.handlers):
        return lambda: None  # configured already (by `serve` before the Runner started)
    handler = _handler(settings)
    handler.procvision_log = True  # type: ignore[attr-defined]
    handler.setFormatter(_Formatter(_FORMAT, style="{", rename_fields=_RENAME, timestamp="time"))
    before = (list(root.handlers), root.level)
    level = logging.getLevelName(settings.level.upper())
    root.handlers = [handler]
    root.setLevel(level if isinstance(level, int) else logging.INFO)
    # uvicorn's loggers would otherwise write text through handlers of their own
    quiet = {name: logging.getLogger(name) for name in ("uvicorn", "uvicorn.error")}
    saved = {name: (list(lg.handlers), lg.propagate) for name, lg in quiet.items()}
    for lg in quiet.values():
        lg.handlers, lg.propagate = [], True

    def undo() -> None:
        root.handlers, root.level = before[0], before[1]
        for name, lg in quiet.items():
            lg.handlers, lg.propagate = saved[name]
        handler.close()

    return undo
