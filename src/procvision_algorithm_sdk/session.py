"""Session: the state of one detection run (one product), shared by all its steps."""

from __future__ import annotations

import copy
import json
from typing import Any

_ABSENT = object()


class Session:
    """Key/value state of one detection run plus a read-only copy of its context."""

    def __init__(self, id: str, context: dict[str, Any] | None = None) -> None:
        self._id = str(id)
        self._context: dict[str, Any] = copy.deepcopy(dict(context or {}))
        self._state: dict[str, Any] = {}
        self._changed: set[str] = set()
        self._deleted: set[str] = set()

    @property
    def id(self) -> str:
        """The session id (read-only)."""
        return self._id

    @property
    def context(self) -> dict[str, Any]:
        """A copy of the run's context (product_code, operator, trace_id, ...)."""
        return copy.deepcopy(self._context)

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value stored under `key`, or `default`."""
        return self._state.get(key, default)

    def set(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable `value` under a string `key` (TypeError otherwise)."""
        if not isinstance(key, str):
            raise TypeError(f"Session keys must be strings, not {type(key).__name__}")
        try:
            # allow_nan=False: NaN/Infinity are not JSON and could not travel to the Runner.
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise TypeError(f"Session value for {key!r} must be JSON-serialisable: {exc}") from exc
        self._state[key] = copy.deepcopy(value)
        self._changed.add(key)
        self._deleted.discard(key)

    def delete(self, key: str) -> bool:
        """Remove `key`; return whether it was there."""
        if key not in self._state:
            return False
        del self._state[key]
        self._changed.discard(key)
        self._deleted.add(key)
        return True

    def exists(self, key: str) -> bool:
        """Return whether `key` is stored."""
        return key in self._state

    # Internal API for the adapter and the Runner; algorithms do not call these.

    def _mark(self) -> None:
        """Start recording changes from now on."""
        self._changed.clear()
        self._deleted.clear()

    def _take_changes(self) -> dict[str, Any]:
        """Return `{"set": {...}, "deleted": [...]}` since the last mark, and mark again."""
        changes = {
            "set": {key: copy.deepcopy(self._state[key]) for key in sorted(self._changed)},
            "deleted": sorted(self._deleted),
        }
        self._mark()
        return changes

    def _snapshot(self) -> dict[str, Any]:
        """Return a deep copy of the whole state."""
        return copy.deepcopy(self._state)

    def _restore(self, state: dict[str, Any]) -> None:
        """Replace the whole state (after a worker restart) without recording changes."""
        self._state = copy.deepcopy(dict(state))
        self._mark()

    def _apply_changes(self, changes: dict[str, Any]) -> None:
        """Apply a change set produced by `_take_changes` (the Runner's copy of the state)."""
        for key, value in dict(changes.get("set") or {}).items():
            self._state[key] = copy.deepcopy(value)
        for key in changes.get("deleted") or []:
            self._state.pop(key, None)

    def _clear(self) -> None:
        """Drop every key (reset of a detection run)."""
        for key in list(self._state):
            self.delete(key)

    def __repr__(self) -> str:
        return f"Session(id={self._id!r}, keys={sorted(self._state)!r})"
