"""The sessions a worker holds: SessionEntry and the LRU SessionCache."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..session import Session
from .outcome import log

__all__ = ["DEFAULT_SESSION_CACHE", "DEFAULT_SESSION_ID", "SessionCache", "SessionEntry"]

DEFAULT_SESSION_CACHE = 1024
DEFAULT_SESSION_ID = "default"


@dataclass
class SessionEntry:
    """A session the worker holds, and the steps of it started but not yet finished."""

    session: Session
    steps: set[int] = field(default_factory=set)


class SessionCache:
    """Sessions by id, least recently used dropped beyond `capacity`."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._entries: OrderedDict[str, SessionEntry] = OrderedDict()

    def get(self, session_id: str, context: dict[str, Any] | None) -> SessionEntry:
        """Return the entry of `session_id`, creating it (with `context`) when unknown."""
        entry = self._entries.get(session_id)
        if entry is not None:
            self._entries.move_to_end(session_id)
            return entry
        entry = SessionEntry(Session(session_id, context))
        self._entries[session_id] = entry
        while len(self._entries) > self.capacity:
            dropped, _ = self._entries.popitem(last=False)
            log.debug("session dropped from the worker cache", session_id=dropped)
        return entry

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._entries
