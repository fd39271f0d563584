"""Containment: everything a worker starts dies with the worker and with the Runner.

Process groups alone do not hold: an algorithm's helper may call setsid (or double-fork) and
leave the worker's group, and PR_SET_PDEATHSIG reaches only the worker. On Linux the Runner
therefore:

- is a child subreaper (prctl PR_SET_CHILD_SUBREAPER) while it is open: orphans of its
  workers' trees are re-parented to it, not to init, so it can find, kill and reap them (the
  last Runner of the process to close clears the flag: orphans adopted after that would be
  zombies nobody reaps);
- marks each worker's environment with `PROCVISION_WORKER=<runner token>.<n>` (inherited by
  what it starts) and walks each live worker's process tree every sweep, remembering every
  descendant by (pid, start time); once a worker is gone, everything remembered for it, and any
  adopted orphan carrying its mark, is SIGKILLed and (if adopted) reaped;
- puts each worker in its own cgroup v2 where the Runner's cgroup is writable (`cgroups`):
  `cgroup.kill` then takes everything, even what escaped the tree walk;
- records its workers' groups and the remembered descendants, with start times and the boot id,
  in `<state_dir>/runner-<token>.json` (atomic writes), so a Runner started after this one was
  SIGKILLed removes what was left (`leftovers`).

Windows: a job object with JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE (`winjob`), untested here.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from . import leftovers, proctable
from .cgroups import CgroupTree

__all__ = ["MARK_ENV", "Containment", "hold_subreaper", "release_subreaper"]

log = logging.getLogger("procvision.runner")

MARK_ENV = leftovers.MARK_ENV
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37
_subreaper_lock = threading.Lock()
_subreaper_holds = 0  # open Containments of this process
_subreaper_before = False  # the process was a subreaper before the first hold: leave it so


def _prctl() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _subreaper_now() -> bool:
    prctl, flag = _prctl(), ctypes.c_int(0)
    return (
        prctl is not None
        and prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) == 0
        and bool(flag.value)
    )


def hold_subreaper() -> bool:
    """Make this process the subreaper of its descendants' orphans while held (Linux)."""
    global _subreaper_holds, _subreaper_before
    with _subreaper_lock:
        if not sys.platform.startswith("linux"):
            return False
        if _subreaper_holds == 0:
            _subreaper_before = _subreaper_now()
            prctl = _prctl()
            if prctl is None or prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
                return False
        _subreaper_holds += 1
        return True


def release_subreaper() -> None:
    """Drop one hold; the last one makes orphans go to init again (nothing would reap them)."""
    global _subreaper_holds
    with _subreaper_lock:
        if _subreaper_holds == 0:
            return
        _subreaper_holds -= 1
        prctl = _prctl()
        if _subreaper_holds == 0 and not _subreaper_before and prctl is not None:
            prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


class Containment:
    """The process containment of one Runner: marks, tree tracking, cgroups, state file."""

    def __init__(self, state_dir: str | Path | None = None, use_cgroups: bool = True) -> None:
        me = proctable.read_proc(os.getpid())
        self.token = f"{os.getpid()}-{me.start if me else 0}-{uuid.uuid4().hex[:8]}"
        self.swept = leftovers.clean(Path(state_dir) if state_dir else None)
        self.subreaper = hold_subreaper()
        self.cgroups = CgroupTree.create(f"procvision-{self.token}") if use_cgroups else None
        self._state = leftovers.StateFile(Path(state_dir), self.token) if state_dir else None
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._workers: dict[str, proctable.Proc] = {}  # mark -> the worker as spawned
        self._tracked: dict[tuple[int, int], str] = {}  # (pid, start) -> owning worker mark
        self._foreign: set[tuple[int, int]] = set()  # adopted children that are not ours
        self._cgroups_left: set[str] = set()  # marks of dead workers whose cgroup remains
        self._reap_later: set[int] = set()  # killed cgroup members we may have adopted
        self._pending: set[str] = set()  # marks handed to spawns not yet registered
        self._job: Any = None
        if os.name == "nt":  # pragma: no cover - Windows
            from .winjob import JobObject

            self._job = JobObject.create()
        self._persist()

    # ------------------------------------------------------------------ spawning

    def prepare(self) -> tuple[str, str | None]:
        """A mark for the next worker and the cgroup.procs file its child joins (or None)."""
        mark = f"{self.token}.{next(self._numbers)}"
        procs = self.cgroups.procs_file(mark) if self.cgroups is not None else None
        with self._lock:
            self._pending.add(mark)  # until register(): a sweep must not take it for a helper
        return mark, procs

    def abandon(self, mark: str) -> None:
        """The spawn of `mark` failed."""
        with self._lock:
            self._pending.discard(mark)

    def register(self, mark: str, process: Any) -> None:
        """Remember a spawned worker (`process` is its Popen)."""
        if self._job is not None:  # pragma: no cover - Windows
            self._job.assign(process)
        proc = proctable.read_proc(process.pid)
        with self._lock:
            self._pending.discard(mark)
            self._workers[mark] = proc or proctable.Proc(process.pid, 0, process.pid, 0, 0, False)
            for key in [k for k in self._tracked if k[0] == process.pid]:
                del self._tracked[key]
        self._persist()

    # ------------------------------------------------------------------ sweeping

    def sweep(self) -> int:
        """Track the live workers' trees; kill and reap what belongs to gone workers."""
        with self._lock:
            live = self._live_workers()
            for pid, mark in list(live.items()):
                self._track_tree(pid, mark)
            for key, mark in list(self._tracked.items()):
                self._track_tree(key[0], mark)
            self._adopt_marked(live)
            killed = self._kill_orphans(set(live.values()))
            self._drop_dead_workers(set(live.values()))
        self._persist()
        return killed

    def _live_workers(self) -> dict[int, str]:
        live: dict[int, str] = {}
        for mark, spawned in self._workers.items():
            now = proctable.read_proc(spawned.pid)
            if now is not None and now.start == spawned.start and not now.zombie:
                live[spawned.pid] = mark
        return live

    def _track_tree(self, pid: int, mark: str) -> None:
        for proc in proctable.descendants(pid):
            if proc.pid not in self._worker_pids():
                self._tracked.setdefault(proc.key, mark)

    def _worker_pids(self) -> set[int]:
        return {w.pid for w in self._workers.values()}

    def _adopt_marked(self, live: dict[int, str]) -> None:
        """Orphans re-parented to us: ours when tracked or carrying one of our marks."""
        workers = self._worker_pids()
        for pid in proctable.children(os.getpid()):
            proc = proctable.read_proc(pid)
            if proc is None or pid in workers or proc.key in self._tracked:
                continue
            if proc.key in self._foreign:
                continue
            env = proctable.environ(pid)
            if env is None:
                # Mid-exec, an orphan's environment reads as empty: judged at a later sweep,
                # never left alone for good on that one read (it would escape containment).
                continue
            mark = env.get(MARK_ENV, "")
            if mark in self._pending:
                continue  # possibly the worker itself, between its fork and register()
            if mark.startswith(self.token + "."):
                self._tracked[proc.key] = mark
                self._track_tree(pid, mark)
            elif not proc.zombie:
                self._foreign.add(proc.key)

    def _kill_orphans(self, live_marks: set[str]) -> int:
        killed = 0
        me = os.getpid()
        for key, mark in list(self._tracked.items()):
            proc = proctable.read_proc(key[0])
            if proc is None or proc.start != key[1]:
                del self._tracked[key]
                continue
            if proc.zombie:
                if proc.ppid == me:  # adopted and exited: reap it (it is ours, not a Popen's)
                    with contextlib.suppress(ChildProcessError, OSError):
                        os.waitpid(proc.pid, os.WNOHANG)
                continue
            if mark not in live_marks:
                with contextlib.suppress(OSError):
                    os.kill(proc.pid, signal.SIGKILL)
                    killed += 1
        self._foreign = {k for k in self._foreign if _same(k)}
        return killed

    def _drop_dead_workers(self, live_marks: set[str]) -> None:
        for mark in [m for m in self._workers if m not in live_marks]:
            if self.cgroups is not None:
                self._cgroups_left.add(mark)
            if not any(owner == mark for owner in self._tracked.values()):
                spawned = self._workers[mark]
                now = proctable.read_proc(spawned.pid)
                if now is None or now.start != spawned.start:  # reaped by its Popen
                    del self._workers[mark]
        if self.cgroups is not None:
            for mark in list(self._cgroups_left):
                removed, pids = self.cgroups.kill(mark)
                self._reap_later.update(pids)
                if removed:
                    self._cgroups_left.discard(mark)
        self._reap_adopted()

    def _reap_adopted(self) -> None:
        """Reap killed cgroup members that were re-parented to us (zombies; not Popen's)."""
        me = os.getpid()
        workers = self._worker_pids()
        for pid in list(self._reap_later):
            proc = proctable.read_proc(pid)
            if proc is None or (proc.zombie and proc.ppid != me) or pid in workers:
                self._reap_later.discard(pid)
            elif proc.zombie:
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)

    def owned(self) -> list[tuple[int, int]]:
        """(pid, start) of every remembered descendant of a worker (not the workers)."""
        with self._lock:
            return list(self._tracked)

    # ------------------------------------------------------------------ lifetime

    def close(self, timeout_s: float = 5.0) -> None:
        """After every worker is reaped: kill and reap all that is left, remove state."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.sweep()
            with self._lock:
                left = [k for k in self._tracked if _alive(k)]
            if not left or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        if left:
            log.warning("processes started by workers still alive after close(): %s", left)
        if self.cgroups is not None:
            pids = self.cgroups.pids()
            self.cgroups.close()
            leftovers.reap(pids)
        if self._job is not None:  # pragma: no cover - Windows
            self._job.close()
        if self._state is not None:
            self._state.remove()
        if self.subreaper:
            self.subreaper = False
            release_subreaper()

    def _persist(self) -> None:
        if self._state is None:
            return
        with self._lock:
            groups = [{"pgid": w.pid, "start": w.start} for w in self._workers.values()]
            procs = [{"pid": pid, "start": start} for pid, start in self._tracked]
            cgroup = str(self.cgroups.base) if self.cgroups is not None else None
        try:
            self._state.write(groups, procs, cgroup)
        except OSError as exc:  # containment state is best effort; the Runner goes on
            log.warning("cannot write runner state %s: %s", self._state.path, exc)


def _same(key: tuple[int, int]) -> bool:
    proc = proctable.read_proc(key[0])
    return proc is not None and proc.start == key[1]


def _alive(key: tuple[int, int]) -> bool:
    proc = proctable.read_proc(key[0])
    return proc is not None and proc.start == key[1] and not proc.zombie
