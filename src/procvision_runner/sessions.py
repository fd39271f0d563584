"""The Runner's authoritative copy of each session's state, idle TTL, per-session log history."""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from procvision_algorithm_sdk.session import Session

# Versions are unique across all sessions, so a worker that still holds state of a closed or
# expired session id can never be mistaken for holding the state of a new one with that id.
_versions = itertools.count(1)


@dataclass
class SessionRecord:
    """One detection run as the Runner knows it."""

    id: str
    context: dict[str, Any]
    state: Session
    version: int
    last_used: float
    logs: deque[dict[str, Any]]
    packages: set[tuple[str, str]] = field(default_factory=set)
    last_worker: str | None = None


class SessionStore:
    """Thread-safe sessions keyed by id; state changes come from result deltas."""

    def __init__(self, ttl_s: float, log_lines: int) -> None:
        self._ttl_s = ttl_s
        self._log_lines = log_lines
        self._lock = threading.Lock()
        self._sessions: dict[str, SessionRecord] = {}

    def touch(self, session_id: str, context: dict[str, Any] | None) -> SessionRecord:
        """Return the session, creating it (with `context`) on first use."""
        now = time.monotonic()
        with self._lock:
            record = self._sessions.get(session_id)
            if record is not None and now - record.last_used > self._ttl_s:
                del self._sessions[session_id]
                record = None
            if record is None:
                record = SessionRecord(
                    id=session_id,
                    context=copy.deepcopy(dict(context or {})),
                    state=Session(session_id, context),
                    version=next(_versions),
                    last_used=now,
                    logs=deque(maxlen=self._log_lines),
                )
                self._sessions[session_id] = record
            record.last_used = now
            return record

    def get(self, session_id: str) -> SessionRecord | None:
        """Return the session if it exists and has not expired."""
        with self._lock:
            record = self._sessions.get(session_id)
            if record is not None and time.monotonic() - record.last_used > self._ttl_s:
                del self._sessions[session_id]
                return None
            return record

    def snapshot(self, session_id: str) -> tuple[dict[str, Any], int]:
        """Return a copy of the state and its version."""
        with self._lock:
            record = self._sessions.get(session_id)
            if record is None:
                return {}, 0
            return record.state._snapshot(), record.version

    def apply(self, session_id: str, delta: Any) -> int | None:
        """Apply a result's session_delta; return the new version (None if nothing changed)."""
        if not isinstance(delta, dict) or not (delta.get("set") or delta.get("deleted")):
            return None
        with self._lock:
            record = self._sessions.get(session_id)
            if record is None:
                return None
            changes: dict[str, Any] = {
                "set": delta.get("set") if isinstance(delta.get("set"), dict) else {},
                "deleted": delta.get("deleted") if isinstance(delta.get("deleted"), list) else [],
            }
            record.state._apply_changes(changes)
            record.version = next(_versions)
            return record.version

    def clear(self, session_id: str) -> int | None:
        """Drop every key of a session (reset); return the new version."""
        with self._lock:
            record = self._sessions.get(session_id)
            if record is None:
                return None
            record.state._restore({})
            record.version = next(_versions)
            return record.version

    def restore(self, session_id: str, context: dict[str, Any] | None, state: dict) -> bool:
        """Make `state` the session's state (a caller carrying it); False if it was already."""
        record = self.touch(session_id, context)
        with self._lock:
            if record.state._snapshot() == state:
                return False
            record.state._restore(copy.deepcopy(state))
            record.version = next(_versions)  # workers holding the old version get it in full
            return True

    def close(self, session_id: str) -> bool:
        """Forget a session and its logs; return whether it existed."""
        with self._lock:
            return self._sessions.pop(session_id, None) is not None

    def add_log(self, session_id: str, record: dict[str, Any]) -> None:
        """Append one log record to the session's bounded history."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None:
                session.logs.append(record)

    def logs(self, session_id: str) -> list[dict[str, Any]]:
        """Return a copy of the session's log history (oldest first)."""
        with self._lock:
            session = self._sessions.get(session_id)
            return list(session.logs) if session is not None else []

    def expire(self) -> list[str]:
        """Drop sessions idle for longer than the TTL; return their ids."""
        now = time.monotonic()
        with self._lock:
            stale = [k for k, r in self._sessions.items() if now - r.last_used > self._ttl_s]
            for key in stale:
                del self._sessions[key]
        return stale

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """The most recently used live sessions (newest first): id, idle seconds, packages, logs."""
        now = time.monotonic()
        with self._lock:
            live = [r for r in self._sessions.values() if now - r.last_used <= self._ttl_s]
            live.sort(key=lambda r: r.last_used, reverse=True)
            return [
                {
                    "id": r.id,
                    "idle_s": round(now - r.last_used, 3),
                    "packages": sorted(f"{n} {v}" for n, v in r.packages),
                    "log_lines": len(r.logs),
                }
                for r in live[: max(0, limit)]
            ]

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)
