"""A worker's stderr as log records, the Runner's own notes about a worker, and its last lines."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from procvision_algorithm_sdk.protocol import parse_log_mark

__all__ = ["MAX_LOG_LINE", "WorkerLogs"]

log = logging.getLogger("procvision.runner")

MAX_LOG_LINE = 64 * 1024
_READ_BLOCK = 64 * 1024


class WorkerLogs:
    """Log records of one worker, tagged with its package, worker id, pid and current call."""

    def __init__(
        self,
        package: str,
        version: str,
        worker_id: str,
        on_log: Callable[[dict[str, Any]], None],
        tail_lines: int,
    ) -> None:
        self.package = package
        self.version = version
        self.worker_id = worker_id
        self._on_log = on_log
        self.pid: int | None = None
        # the call the worker runs now: its lines belong to that session and trace
        self.session_id: str | None = None
        self.trace_id: str | None = None
        self._tail: deque[str] = deque(maxlen=tail_lines)
        self._mark: str | None = None  # the last log-mark line read (protocol.LOG_MARKS)
        self._mark_seen = threading.Condition()

    def read(self, fd: int) -> None:
        """Turn every stderr line read from `fd` into a record until EOF or a read error."""
        rest = b""
        while True:
            try:
                chunk = os.read(fd, _READ_BLOCK)
            except OSError:
                break
            if not chunk:
                break
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            if len(rest) > MAX_LOG_LINE:
                lines.append(rest[:MAX_LOG_LINE] + b" [line truncated]")
                rest = b""
            for line in lines:
                self.emit_line(line)
        if rest:
            self.emit_line(rest)

    def emit_line(self, raw: bytes) -> None:
        """One stderr line: a JSON record from the SDK logger, or plain text kept as a record."""
        if len(raw) > MAX_LOG_LINE:
            raw = raw[:MAX_LOG_LINE] + b" [line truncated]"
        text = raw.decode("utf-8", "replace").rstrip("\r")
        if not text.strip():
            return
        mark = parse_log_mark(text)
        if mark is not None:
            with self._mark_seen:
                self._mark = mark
                self._mark_seen.notify_all()
            return
        record: dict[str, Any] | None = None
        if text.startswith("{"):
            with contextlib.suppress(ValueError):
                parsed = json.loads(text)
                if isinstance(parsed, dict):
                    record = parsed
        # quoted in error messages: a record's message reads better there than its JSON
        shown = str(record.get("message", text)) if record is not None else text
        self._tail.append(shown if len(shown) <= 400 else shown[:400] + "...")
        if record is None:  # print() or a library's plain line: stamped when read
            record = {
                "level": "info",
                "timestamp_ms": int(time.time() * 1000),
                "message": text,
                "stream": "text",
            }
        record["package"] = self.package
        record["version"] = self.version
        record["worker"] = self.worker_id
        record["worker_pid"] = self.pid
        record["session_id"] = self.session_id
        record["trace_id"] = self.trace_id
        try:
            self._on_log(record)
        except Exception:  # a log sink must never stop the reader (the worker would stall)
            log.exception("worker log sink failed")

    def wait_mark(self, request_id: str, timeout_s: float) -> bool:
        """Wait until the reader has passed call `request_id`'s log mark; False at the deadline."""
        with self._mark_seen:
            return self._mark_seen.wait_for(lambda: self._mark == request_id, timeout_s)

    def runner(self, level: str, message: str) -> None:
        """A record the Runner writes about this worker (bad frames, broken streams)."""
        with contextlib.suppress(Exception):
            self._on_log(
                {
                    "level": level,
                    "message": message,
                    "source": "runner",
                    "package": self.package,
                    "version": self.version,
                    "worker": self.worker_id,
                    "worker_pid": self.pid,
                    "session_id": self.session_id,
                    "trace_id": self.trace_id,
                }
            )

    def tail_text(self, lines: int = 8) -> str:
        """The last stderr lines, ready to append to an error message ("" when none)."""
        tail = list(self._tail)[-lines:]
        return ("; last stderr: " + " | ".join(tail)) if tail else ""
