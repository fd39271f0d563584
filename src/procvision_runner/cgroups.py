"""cgroup v2 containment: one cgroup per worker under a cgroup of the Runner; `cgroup.kill`.

Used only where the Runner's own cgroup v2 directory is writable (a delegated cgroup, e.g.
systemd `Delegate=yes`, or root on a host whose unified hierarchy is writable). A worker joins
its cgroup in the child before exec, so nothing it starts can leave it (setsid and double forks
included); killing the cgroup kills all of it. Names carry the Runner's pid and start time
(`procvision-<pid>-<start>-<hex>`) so a later Runner removes those of a Runner that was
SIGKILLed. Without a writable cgroup v2 (cgroup v1 hosts, unprivileged users without
delegation) this module does nothing and containment relies on the process tree.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["CgroupTree", "own_cgroup_dir"]

PREFIX = "procvision-"


def own_cgroup_dir() -> Path | None:
    """This process's cgroup v2 directory when it is writable, else None."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
        membership = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    mount = None
    for line in mountinfo:
        parts = line.split()
        if "-" in parts:
            sep = parts.index("-")
            if len(parts) > sep + 1 and parts[sep + 1] == "cgroup2":
                mount = parts[4]
                break
    relative = next((line[3:] for line in membership if line.startswith("0::")), None)
    if mount is None or relative is None:
        return None
    directory = Path(mount) / relative.strip().lstrip("/")
    if not (directory / "cgroup.procs").exists() or not os.access(directory, os.W_OK):
        return None
    return directory


def _tree(directory: Path) -> list[Path]:
    """`directory` and every directory below it, deepest first.

    os.walk, not Path.glob: another Runner may remove a gone Runner's cgroup while this one
    walks it, and glob raises FileNotFoundError for a directory that vanished mid-walk.
    """
    return [Path(top) for top, _, _ in os.walk(directory, topdown=False)]


def cgroup_pids(directory: Path) -> list[int]:
    """Every pid in `directory` and its child cgroups."""
    pids: list[int] = []
    for cgroup in _tree(directory):
        with contextlib.suppress(OSError, ValueError):
            pids.extend(int(pid) for pid in (cgroup / "cgroup.procs").read_text().split())
    return sorted(set(pids))


def kill_cgroup(directory: Path) -> None:
    """SIGKILL every process in `directory` and below (cgroup.kill, else one by one)."""
    try:
        (directory / "cgroup.kill").write_text("1")
        return
    except OSError:
        pass  # kernels before 5.14 have no cgroup.kill
    for pid in cgroup_pids(directory):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def remove_cgroup(directory: Path, timeout_s: float = 2.0) -> bool:
    """Kill and rmdir `directory` (children first); False if it is still populated."""
    deadline = time.monotonic() + timeout_s
    while True:
        kill_cgroup(directory)
        for child in _tree(directory):  # children first; `directory` itself below
            if child != directory:
                with contextlib.suppress(OSError):
                    child.rmdir()
        try:
            directory.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


class CgroupTree:
    """The Runner's cgroup and one child cgroup per worker."""

    def __init__(self, base: Path) -> None:
        self.base = base

    @classmethod
    def create(cls, name: str) -> CgroupTree | None:
        """Make `<own cgroup>/<name>`; None when cgroup v2 is not writable here."""
        parent = own_cgroup_dir()
        if parent is None:
            return None
        base = parent / name
        try:
            base.mkdir()
        except OSError:
            return None
        return cls(base)

    def procs_file(self, mark: str) -> str | None:
        """Create the cgroup of worker `mark`; the path its child writes "0" into."""
        directory = self.base / f"w-{mark.rsplit('.', 1)[-1]}"
        try:
            directory.mkdir(exist_ok=True)
        except OSError:
            return None
        return str(directory / "cgroup.procs")

    def kill(self, mark: str) -> tuple[bool, list[int]]:
        """Kill everything in worker `mark`'s cgroup and remove it: (removed, pids killed)."""
        directory = self.base / f"w-{mark.rsplit('.', 1)[-1]}"
        pids = cgroup_pids(directory)
        return remove_cgroup(directory, timeout_s=0.0), pids

    def pids(self) -> list[int]:
        """Every process in the Runner's cgroups."""
        return cgroup_pids(self.base)

    def close(self) -> None:
        """Kill every worker cgroup and remove the Runner's."""
        remove_cgroup(self.base)

    @staticmethod
    def remove_dead(runner_alive: Callable[[int, int], bool]) -> list[int]:
        """Remove the cgroups of Runners that are gone (named by pid and start time); the pids
        that were in them."""
        parent = own_cgroup_dir()
        removed: list[int] = []
        if parent is None:
            return removed
        for directory in parent.glob(f"{PREFIX}*"):
            parts = directory.name[len(PREFIX) :].split("-")
            try:
                pid, start = int(parts[0]), int(parts[1])
            except (IndexError, ValueError):
                continue
            if not runner_alive(pid, start):
                removed.extend(cgroup_pids(directory))
                remove_cgroup(directory)
        return removed
