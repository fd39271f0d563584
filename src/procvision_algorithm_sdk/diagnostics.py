"""Diagnostics: key/value numbers an algorithm publishes for the platform to collect."""

from __future__ import annotations

from typing import Any


class Diagnostics:
    """A small key/value store the adapter forwards with each result."""

    def __init__(self) -> None:
        self.items: dict[str, Any] = {}

    def publish(self, key: str, value: Any) -> None:
        """Record `value` under `key`, replacing an earlier value."""
        self.items[key] = value

    def get(self) -> dict[str, Any]:
        """Return a copy of everything published so far."""
        return dict(self.items)

    def clear(self) -> None:
        """Forget everything published (the adapter calls this after forwarding)."""
        self.items.clear()
