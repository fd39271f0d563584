"""Read-only views of Linux processes from /proc: identity (pid + start time), tree, environment.

A pid alone is not an identity (the kernel reuses numbers); (pid, start time in clock ticks
since boot) within one boot id is. Every function returns None / empty where /proc is missing
(non-Linux) or the process is gone, and never raises for a vanished process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Proc",
    "boot_id",
    "children",
    "descendants",
    "environ",
    "environ_value",
    "read_proc",
    "scan",
]


@dataclass(frozen=True)
class Proc:
    """One process as /proc/<pid>/stat shows it."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    start: int  # clock ticks after boot: with the pid, an identity that is never reused
    zombie: bool

    @property
    def key(self) -> tuple[int, int]:
        """(pid, start): the identity to compare before signalling."""
        return (self.pid, self.start)


def boot_id() -> str:
    """This boot's id (start times are relative to it); "" where unknown."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def read_proc(pid: int) -> Proc | None:
    """The process `pid`, or None when it does not exist (or /proc is absent)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
        # comm may hold spaces and parentheses: the fields start after the last ")".
        rest = data[data.rindex(b")") + 2 :].split()
        return Proc(pid, int(rest[1]), int(rest[2]), int(rest[3]), int(rest[19]), rest[0] == b"Z")
    except (OSError, ValueError, IndexError):
        return None


def children(pid: int) -> list[int]:
    """Direct children of `pid` (of all its threads), from /proc/<pid>/task/*/children."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as handle:
                out.extend(int(p) for p in handle.read().split())
        except (OSError, ValueError):
            continue
    return out


def descendants(pid: int, limit: int = 10000) -> list[Proc]:
    """Every live descendant of `pid` (breadth first, bounded by `limit`)."""
    found: list[Proc] = []
    frontier = [pid]
    seen = {pid}
    while frontier and len(found) < limit:
        nxt: list[int] = []
        for parent in frontier:
            for child in children(parent):
                if child in seen:
                    continue
                seen.add(child)
                proc = read_proc(child)
                if proc is not None:
                    found.append(proc)
                    nxt.append(child)
        frontier = nxt
    return found


def scan() -> list[Proc]:
    """Every process visible in /proc."""
    out: list[Proc] = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if name.isdigit():
            proc = read_proc(int(name))
            if proc is not None:
                out.append(proc)
    return out


def environ(pid: int) -> dict[str, str] | None:
    """The environment of process `pid`; None when it reads as empty or cannot be read.

    Empty is not an answer: a process in the middle of an exec reads as empty (the kernel has
    dropped the old image and not yet placed the new one's environment), as do zombies.
    """
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    out: dict[str, str] = {}
    for item in data.split(b"\0"):
        name, sep, value = item.partition(b"=")
        if sep:
            out.setdefault(name.decode("utf-8", "replace"), value.decode("utf-8", "replace"))
    return out or None


def environ_value(pid: int, name: str) -> str | None:
    """The value of environment variable `name` in process `pid` (None if absent/unreadable)."""
    return (environ(pid) or {}).get(name)
