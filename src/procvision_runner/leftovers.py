"""What a SIGKILLed Runner left behind, and the state file that lets the next Runner remove it.

Each Runner with a state dir keeps `<state_dir>/runner-<token>.json` (token = pid-start-random)
up to date: its boot id and start time, its workers' process groups (pgid + leader start time)
and every descendant it saw (pid + start time), and its cgroup. A Runner starting up, under the
directory's lock, takes each file whose Runner is gone: on the same boot it SIGKILLs the group
members started after their recorded leader (the group id cannot be reused while members
exist; a live process holding the number with another start time means it was reused, so
nothing is killed), the recorded processes whose start time still matches, and the recorded
cgroup; then it deletes the file. Independently of any state dir, every process whose
environment carries a worker mark of a Runner that is gone is SIGKILLed, and cgroups named
after a gone Runner are removed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from . import proctable
from .cgroups import CgroupTree, cgroup_pids, remove_cgroup

__all__ = ["MARK_ENV", "StateFile", "clean", "runner_alive"]

log = logging.getLogger("procvision.runner")

MARK_ENV = "PROCVISION_WORKER"


def runner_alive(pid: int, start: int) -> bool:
    """Whether the Runner process (pid, start time) still runs."""
    proc = proctable.read_proc(pid)
    return proc is not None and proc.start == start and not proc.zombie


def _token_alive(token: str) -> bool:
    try:
        pid, start = (int(x) for x in token.split("-")[:2])
    except ValueError:
        return True  # not one of ours: never act on it
    return runner_alive(pid, start)


class StateFile:
    """One Runner's record of what it started (atomic writes: tmp + fsync + rename)."""

    def __init__(self, directory: Path, token: str) -> None:
        self.directory = directory
        self.token = token
        self.path = directory / f"runner-{token}.json"
        self._last: str | None = None

    def write(self, groups: list[dict[str, int]], procs: list[dict[str, int]], cgroup: Any) -> None:
        """Replace the record when it changed."""
        pid, start = (int(x) for x in self.token.split("-")[:2])
        doc = {
            "runner": {"pid": pid, "start": start, "boot_id": proctable.boot_id()},
            "groups": groups,
            "processes": procs,
            "cgroup": cgroup,
        }
        text = json.dumps(doc, sort_keys=True)
        if text == self._last:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        self._last = text

    def remove(self) -> None:
        """Delete the record (orderly close)."""
        with contextlib.suppress(OSError):
            self.path.unlink()


def clean(state_dir: Path | None) -> list[int]:
    """Kill what gone Runners left (state files, worker marks, cgroups); return killed pids."""
    killed = _clean(state_dir)
    reap(killed)
    return killed


def _clean(state_dir: Path | None) -> list[int]:
    killed = _kill_marked()
    killed.extend(CgroupTree.remove_dead(runner_alive))
    if state_dir is None or not state_dir.is_dir():
        return killed
    lock_path = state_dir / ".lock"
    with open(lock_path, "a+") as lock:
        try:
            import fcntl

            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows
            pass
        for path in sorted(state_dir.glob("runner-*.json")):
            killed.extend(_clean_one(path))
    return killed


def reap(pids: list[int], timeout_s: float = 2.0) -> None:
    """Reap the killed processes this process adopted (it may be a subreaper already)."""
    me = os.getpid()
    deadline = time.monotonic() + timeout_s
    pending = set(pids)
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            proc = proctable.read_proc(pid)
            if proc is None or (proc.zombie and proc.ppid != me):
                pending.discard(pid)
            elif proc.zombie:
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)
        if pending:
            time.sleep(0.01)


def _kill_marked() -> list[int]:
    """SIGKILL every process carrying the worker mark of a Runner that is gone."""
    killed: list[int] = []
    me = os.getpid()
    for proc in proctable.scan():
        if proc.pid == me or proc.zombie:
            continue
        mark = proctable.environ_value(proc.pid, MARK_ENV)
        if not mark or _token_alive(mark.rsplit(".", 1)[0]):
            continue
        with contextlib.suppress(OSError):
            os.kill(proc.pid, signal.SIGKILL)
            killed.append(proc.pid)
    return killed


def _clean_one(path: Path) -> list[int]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        runner = doc["runner"]
        pid, start, boot = int(runner["pid"]), int(runner["start"]), str(runner["boot_id"])
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("unreadable runner state %s removed", path)
        with contextlib.suppress(OSError):
            path.unlink()
        return []
    if runner_alive(pid, start) and boot == proctable.boot_id():
        return []  # a live Runner's record
    killed: list[int] = []
    if boot == proctable.boot_id():
        killed = _kill_recorded(doc)
    cgroup = doc.get("cgroup")
    if isinstance(cgroup, str) and Path(cgroup).name.startswith("procvision-"):
        killed.extend(cgroup_pids(Path(cgroup)))
        remove_cgroup(Path(cgroup))
    with contextlib.suppress(OSError):
        path.unlink()
    if killed:
        log.warning("removed %d processes left by runner %s: %s", len(killed), pid, killed)
    return killed


def _kill_recorded(doc: dict[str, Any]) -> list[int]:
    targets: set[int] = set()
    groups = [g for g in doc.get("groups") or [] if isinstance(g, dict)]
    if groups:
        table = proctable.scan()
        for group in groups:
            pgid, start = int(group.get("pgid", 0)), int(group.get("start", 0))
            leader = proctable.read_proc(pgid)
            if pgid <= 1 or (leader is not None and leader.start != start):
                continue  # the number now names another process's group
            targets.update(p.pid for p in table if p.pgid == pgid and p.start >= start)
    for item in doc.get("processes") or []:
        if not isinstance(item, dict):
            continue
        proc = proctable.read_proc(int(item.get("pid", 0)))
        if proc is not None and proc.start == int(item.get("start", -1)):
            targets.add(proc.pid)
    killed: list[int] = []
    for pid in sorted(targets - {os.getpid()}):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed
