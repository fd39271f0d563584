"""The state vocabularies of pools and workers, and why a worker left service.

The states are str-valued enums: a member equals its string ("READY" == WorkerState.READY),
so stats(), packages(), the HTTP answers and the metrics labels keep the strings they had.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["Failure", "FailureKind", "PoolState", "WorkerState"]


class _StrState(str, Enum):
    """A str-valued enum whose str() and format() are the bare value on every Python."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class PoolState(_StrState):
    """Where the pool of one package version is in its life."""

    STARTING = "STARTING"
    READY = "READY"
    FAILED = "FAILED"  # no worker could start, or the crash-loop breaker is open
    DRAINING = "DRAINING"  # unloading: in-flight calls finish, no new ones are routed here
    STOPPED = "STOPPED"


class WorkerState(_StrState):
    """Where one worker process is in its life."""

    STARTING = "STARTING"
    READY = "READY"
    DEAD = "DEAD"  # out of service (died, timed out, lost, terminated); being reaped
    STOPPED = "STOPPED"  # shut down on purpose and reaped


class FailureKind(_StrState):
    """What made a worker leave service: decides which counter the pool adds it to."""

    CRASH = "crash"  # exited, closed its pipes, asked for a restart, or was terminated
    TIMEOUT = "timeout"  # a call passed its deadline (or its frame could not be written)
    HEARTBEAT = "heartbeat"  # no pong within interval + grace
    MEMORY = "memory"  # above worker_memory_limit_mb


@dataclass(frozen=True)
class Failure:
    """Why a worker left service: its kind and the message quoted in logs and stats."""

    kind: FailureKind
    message: str
