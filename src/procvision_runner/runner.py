"""Runner: routes pid -> package version -> pool, and runs steps on resident workers.

Errors caused by a call's input or by a worker come back as result dicts with codes; RunnerError
is raised only for misuse of load/route/unload. The package table and pid routes are in
routing.py, the way of one call (StepCall -> checks -> slot -> phases -> result dicts) in
call_path.py, the sessions' state in sessions.py; this module holds them together and
supervises the pools.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from procvision_algorithm_sdk import segment
from procvision_algorithm_sdk.errors import INVALID_PARAMS, INVALID_PID

from . import legacy_transport
from .call_path import CallPath
from .calls import PackageKey, StepCall
from .config import RunnerConfig
from .containment import Containment
from .errors import RunnerError
from .pool import PoolCounters
from .results import CallRecord
from .routing import PackageTable
from .sessions import SessionStore
from .worker import Spawner

__all__ = ["CallRecord", "PackageKey", "Runner", "RunnerError", "StepCall"]

log = logging.getLogger("procvision.runner")
worker_log = logging.getLogger("procvision.worker")

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


class Runner:
    """Resident supervised workers per package version, pid routing, sessions, results."""

    def __init__(self, config: RunnerConfig | None = None) -> None:
        self.config = config or RunnerConfig()
        self.swept = segment.sweep_stale_segments()
        legacy_transport.sweep()  # frame directories a dead Runner left behind
        self._lock = threading.Lock()
        self._counters = PoolCounters()
        self._sessions = SessionStore(self.config.session_ttl_s, self.config.session_log_lines)
        # Before any worker: removes what a SIGKILLed Runner left, makes this one a subreaper.
        self._containment = Containment(self.config.state_dir, self.config.worker_cgroups)
        self._spawner = Spawner(self._containment)
        self._table = PackageTable(self.config, self._spawner, self._counters, self._on_log)
        self._pools = self._table.pools  # the same dict (read by tests and diagnostics)
        self._calls = CallPath(self.config, self._table, self._sessions)
        self._closed = False
        self._stop = threading.Event()
        self._supervisor = threading.Thread(
            target=self._supervise, name="procvision-supervisor", daemon=True
        )
        self._supervisor.start()
        ref = weakref.ref(self)
        self._atexit = lambda: r.close() if (r := ref()) is not None else None
        atexit.register(self._atexit)

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ management

    def load(
        self,
        path: str | Path,
        python: str | None = None,
        *,
        activate: bool = True,
        workers: int | None = None,
        transport: str = legacy_transport.TRANSPORT_SHM,
    ) -> PackageKey:
        """Start and warm a pool for the unpacked package at `path`; route its pids if asked.

        `transport="files"`: the package kept the original SDK (`install --keep-bundled-sdk`);
        its workers speak the earlier protocol and get each frame as a file.

        A package whose workers cannot start is kept in state FAILED (see packages()) and its
        routed pids answer with that error; RunnerError is raised only for misuse.
        """
        self._check_open()
        return self._table.load(path, python, activate, workers, transport)

    def route(self, pids: Iterable[str], key: PackageKey | None) -> None:
        """Bind pids to a loaded package (all at once), or unbind them with None."""
        self._table.route(pids, key)

    def unload(self, key: PackageKey, drain_timeout_s: float = 30.0) -> None:
        """Unroute a package, wait for its in-flight calls, then stop its workers."""
        self._table.unload(key, drain_timeout_s)

    def routes(self) -> dict[str, PackageKey]:
        """Return the current pid -> package routing."""
        return self._table.routes()

    def packages(self) -> list[dict[str, Any]]:
        """Loaded packages: name, version, state, workers, info, routed pids."""
        return self._table.packages()

    def package_info(self, key: PackageKey) -> dict[str, Any]:
        """Return the algorithm's get_info() of a loaded package."""
        pool = self._table.pool(key)
        if pool is None:
            raise RunnerError(f"package {key[0]} {key[1]} is not loaded", INVALID_PID)
        return dict(pool.info or {})

    def add_call_observer(self, fn: Callable[[CallRecord], None]) -> None:
        """Call `fn` with a CallRecord after every answered phase."""
        self._calls.add_observer(fn)

    # ------------------------------------------------------------------ calls

    def run_step(
        self,
        pid: str,
        step_index: int,
        frame: Any,
        *,
        user_params: dict[str, Any] | None = None,
        session_id: str | None = None,
        session_context: dict[str, Any] | None = None,
        color_space: str = "RGB",
        camera_id: str | None = None,
        timestamp_ms: int | None = None,
        guide_frame: Any = None,
        step_desc: str | None = None,
        guide_info: list[Any] | None = None,
        guide_color_space: str | None = None,
    ) -> dict[str, Any]:
        """Run pre_execute, then execute unless pre returned ERROR, on one worker.

        For an execute-only package: one execute with `frame` as the current image and
        `guide_frame`, `step_desc`, `guide_info`; the answer's pre_execute is None.
        """
        call = StepCall(
            pid,
            step_index,
            frame,
            user_params,
            session_id,
            session_context,
            color_space,
            camera_id,
            timestamp_ms,
            guide_frame,
            step_desc,
            guide_info,
            guide_color_space,
        )
        results: list[Any] = self._calls.invoke(("pre", "execute"), call)
        return {"pre_execute": results[0], "execute": results[1] if len(results) > 1 else None}

    def pre_execute(
        self,
        pid: str,
        step_index: int,
        frame: Any,
        *,
        user_params: dict[str, Any] | None = None,
        session_id: str | None = None,
        session_context: dict[str, Any] | None = None,
        color_space: str = "RGB",
        camera_id: str | None = None,
        timestamp_ms: int | None = None,
        guide_frame: Any = None,
        step_desc: str | None = None,
        guide_info: list[Any] | None = None,
        guide_color_space: str | None = None,
    ) -> dict[str, Any]:
        """Run only pre_execute of a step."""
        call = StepCall(
            pid,
            step_index,
            frame,
            user_params,
            session_id,
            session_context,
            color_space,
            camera_id,
            timestamp_ms,
            guide_frame,
            step_desc,
            guide_info,
            guide_color_space,
        )
        return self._calls.invoke(("pre",), call)[0]

    def execute(
        self,
        pid: str,
        step_index: int,
        frame: Any,
        *,
        user_params: dict[str, Any] | None = None,
        session_id: str | None = None,
        session_context: dict[str, Any] | None = None,
        color_space: str = "RGB",
        camera_id: str | None = None,
        timestamp_ms: int | None = None,
        guide_frame: Any = None,
        step_desc: str | None = None,
        guide_info: list[Any] | None = None,
        guide_color_space: str | None = None,
    ) -> dict[str, Any]:
        """Run only execute of a step (the one call of an execute-only package)."""
        call = StepCall(
            pid,
            step_index,
            frame,
            user_params,
            session_id,
            session_context,
            color_space,
            camera_id,
            timestamp_ms,
            guide_frame,
            step_desc,
            guide_info,
            guide_color_space,
        )
        return self._calls.invoke(("execute",), call)[0]

    # ------------------------------------------------------------------ sessions

    def reset(self, session_id: str) -> None:
        """Restart a detection run: clear its state and call the algorithm's reset hook."""
        self._calls.reset(session_id)

    def has_session(self, session_id: str) -> bool:
        """Whether the Runner keeps state for this session (an expired one does not count)."""
        return self._sessions.get(session_id) is not None

    def session_state(self, session_id: str) -> dict[str, Any] | None:
        """A copy of a kept session's state (None if the Runner keeps none for it)."""
        if self._sessions.get(session_id) is None:
            return None
        return self._sessions.snapshot(session_id)[0]

    def restore_session(
        self, session_id: str, state: dict[str, Any], context: dict[str, Any] | None = None
    ) -> bool:
        """Adopt a session's state carried by the caller (scale-out); False if already held."""
        if not isinstance(state, dict):
            raise RunnerError("a session state must be a JSON object", INVALID_PARAMS)
        return self._sessions.restore(session_id, context, state)

    def close_session(self, session_id: str) -> None:
        """Forget a session's state and log history."""
        self._sessions.close(session_id)

    def recent_sessions(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most recently used sessions (newest first), for the operator page."""
        return self._sessions.recent(limit)

    def session_logs(self, session_id: str) -> list[dict[str, Any]]:
        """Return the session's recent worker log records (bounded, oldest first)."""
        return self._sessions.logs(session_id)

    def _on_log(self, record: dict[str, Any]) -> None:
        session_id = record.get("session_id")
        if session_id:
            self._sessions.add_log(str(session_id), record)
        level = _LEVELS.get(str(record.get("level", "info")).lower(), logging.INFO)
        if worker_log.isEnabledFor(level):
            worker_log.log(
                level,
                "[%s %s %s] %s",
                record.get("package"),
                record.get("version"),
                record.get("worker"),
                record.get("message"),
                extra={"procvision": record},
            )

    # ------------------------------------------------------------------ supervision

    def _supervise(self) -> None:
        interval = min(0.1, self.config.heartbeat_interval_ms / 4000)
        last_expiry = last_sweep = 0.0
        while not self._stop.wait(interval):
            now = time.monotonic()
            for pool in self._table.all_pools():
                try:
                    pool.tick(now)
                except Exception:
                    log.exception("supervisor tick failed for %s", pool.spec.name)
            if now - last_expiry > 1.0:
                last_expiry = now
                self._sessions.expire()
            if now - last_sweep >= 0.25:  # a /proc walk of the workers' trees, not every tick
                last_sweep = now
                try:
                    self._containment.sweep()
                except Exception:
                    log.exception("containment sweep failed")

    def stats(self) -> dict[str, Any]:
        """Counters (restarts, timeouts, crash loops, ...), worker states, shm bytes in use."""
        pools = self._table.all_pools()
        out: dict[str, Any] = dict(self._counters.as_dict())
        out["shm_bytes_in_use"] = sum(p.shm_bytes() for p in pools)
        out["sessions"] = len(self._sessions)
        out["packages"] = [p.describe() for p in pools]
        out["workers"] = [
            dict(w.info(), package=p.spec.name, version=p.spec.version)
            for p in pools
            for w in p.workers()
        ]
        return out

    def _check_open(self) -> None:
        if self._closed:
            raise RunnerError("the runner is closed")

    def close(self) -> None:
        """Shut every worker down, reap them, unlink every slot; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        pools = self._table.close()
        threads = [threading.Thread(target=p.stop, daemon=True) for p in pools]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self._stop.set()
        self._supervisor.join(timeout=5)
        with self._table.lock:
            self._pools.clear()
        self._containment.close()
        self._spawner.stop()
        with contextlib.suppress(Exception):
            atexit.unregister(self._atexit)
