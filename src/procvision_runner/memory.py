"""Per-package memory bounds of workers: the resident set read from /proc and the two limits.

`max_worker_rss_mb` (soft): a worker found above it after a call is recycled by its pool (a
replacement is started and warmed first, then the old one is shut down; no call fails).
`worker_memory_limit_mb` (hard): the supervisor reads the RSS of every worker each tick
(<= 100 ms) and a worker above it is killed; its call answers 1004. A watchdog rather than
RLIMIT_AS/RLIMIT_DATA: the address-space limit counts the shared-memory slots and the
libraries' reservations (CUDA reserves tens of GB), and a failed malloc inside native code is a
crash or a 1009 rather than a clear memory answer. The price: growth faster than one tick can
overshoot the limit before the kill. Both limits cover the worker process itself, not helpers
it starts. Linux only (/proc); elsewhere the RSS is unknown and no limit applies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .config import RunnerConfig

__all__ = ["MemoryLimits", "limits_for", "rss_bytes"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_MB = 1024 * 1024


@dataclass(frozen=True)
class MemoryLimits:
    """The memory bounds of one package's workers, in bytes (0: no bound)."""

    recycle_above: int = 0
    kill_above: int = 0

    @property
    def active(self) -> bool:
        """Whether any bound applies."""
        return bool(self.recycle_above or self.kill_above)


def limits_for(config: RunnerConfig, package: str) -> MemoryLimits:
    """The limits of `package`: its `package_limits` entry, else the Runner-wide values."""
    own = config.package_limits.get(package, {})
    soft = own.get("max_worker_rss_mb", config.max_worker_rss_mb)
    hard = own.get("worker_memory_limit_mb", config.worker_memory_limit_mb)
    return MemoryLimits(int(soft) * _MB, int(hard) * _MB)


def rss_bytes(pid: int | None) -> int | None:
    """The resident set size of `pid` in bytes, or None when it cannot be read."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            fields = handle.read().split()
        return int(fields[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def megabytes(n: int) -> str:
    """`n` bytes as a short MB text for messages."""
    return f"{n / _MB:.0f} MB"
