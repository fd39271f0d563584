"""The audit log: one JSON line per store action, appended and fsynced, never rewritten."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


class AuditLog:
    """Append-only JSON lines at `<store>/logs/audit.jsonl`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def record(
        self,
        action: str,
        outcome: str,
        *,
        package: str | None = None,
        version: str | None = None,
        pids: list[str] | None = None,
        error_code: str | None = None,
        message: str = "",
        **extra: Any,
    ) -> dict:
        """Append one line: action, package, version, pids, outcome, time (and why on refusal)."""
        line = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "timestamp_ms": int(time.time() * 1000),
            "action": action,
            "package": package,
            "version": version,
            "pids": list(pids or []),
            "outcome": outcome,
            "error_code": error_code,
            "message": message,
            "process": os.getpid(),
            **extra,
        }
        data = (json.dumps(line, sort_keys=True, default=str) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return line

    def read(self) -> list[dict]:
        """Every line so far (a torn last line from a crash is skipped)."""
        if not self.path.exists():
            return []
        out = []
        for raw in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(raw))
            except json.JSONDecodeError:
                continue
        return out
