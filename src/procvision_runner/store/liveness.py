"""Whether a process recorded in the store is still the one that wrote the record.

A pid alone is not enough: after a crash or a reboot the number may belong to another process.
A record therefore carries the process's start time (clock ticks since boot, /proc/<pid>/stat)
and the boot id; without /proc (not Linux) only the pid is compared.
"""

from __future__ import annotations

import os
from typing import Any

from procvision_algorithm_sdk._process import pid_alive

from .venv import _proc_stat, boot_id

__all__ = ["identity", "is_alive"]


def identity(pid: int | None = None) -> dict[str, Any]:
    """`{pid, start_ticks, boot_id}` of a process (default: this one) for a store record."""
    pid = os.getpid() if pid is None else pid
    stat_ = _proc_stat(pid)
    return {"pid": pid, "start_ticks": stat_[1] if stat_ else None, "boot_id": boot_id()}


def is_alive(record: dict[str, Any]) -> bool:
    """Whether the process a record names (pid, start_ticks, boot_id) is still running."""
    pid = record.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or not pid_alive(pid):
        return False
    here = boot_id()
    if here is not None and record.get("boot_id") not in (None, here):
        return False  # written before a reboot
    start = record.get("start_ticks")
    if isinstance(start, int):
        stat_ = _proc_stat(pid)
        if stat_ is not None and stat_[1] != start:
            return False  # the pid was reused by another process
    return True
