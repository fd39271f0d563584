"""The Runner-wide counters every pool adds to (restarts, timeouts, crashes, ...)."""

from __future__ import annotations

import threading

__all__ = ["PoolCounters"]

_NAMES = (
    "restarts",
    "timeouts",
    "crashes",
    "heartbeat_losses",
    "crash_loops",
    "breaker_trials",
    "memory_recycles",
    "memory_kills",
    "busy_rejections",
)


class PoolCounters:
    """Runner-wide counters shared by every pool (read by stats())."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.restarts = 0
        self.timeouts = 0
        self.crashes = 0
        self.heartbeat_losses = 0
        self.crash_loops = 0
        self.breaker_trials = 0
        self.memory_recycles = 0
        self.memory_kills = 0
        self.busy_rejections = 0

    def add(self, name: str, n: int = 1) -> None:
        """Increment one counter."""
        with self.lock:
            setattr(self, name, getattr(self, name) + n)

    def as_dict(self) -> dict[str, int]:
        """Return the counters as a dict."""
        with self.lock:
            return {k: getattr(self, k) for k in _NAMES}
