"""Runner: routes pid -> package version -> pool, and runs steps on resident workers.

Errors caused by a call's input or by a worker come back as result dicts with codes; RunnerError
is raised only for misuse of load/route/unload. A call travels as a StepCall (calls.py), is
checked by validate_call(), and its answers become result dicts in results.py.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import logging
import os
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from procvision_algorithm_sdk import segment
from procvision_algorithm_sdk.contract import check_manifest, is_safe_name
from procvision_algorithm_sdk.errors import (
    ACTIVATION_CONFLICT,
    INCOMPATIBLE_PYTHON,
    INVALID_PARAMS,
    INVALID_PID,
    MANIFEST_MISSING,
    TIMEOUT,
    UNKNOWN_ERROR,
)
from procvision_algorithm_sdk.generation import EXECUTE_ONLY, manifest_api
from procvision_algorithm_sdk.shared_memory import read_image_from_shared_memory

from . import execute_only, legacy_transport
from .calls import CallRefused, PackageKey, StepCall, ValidCall, validate_call
from .config import RunnerConfig
from .containment import Containment
from .errors import RunnerError
from .leases import SharedFrame
from .pool import FAILED, STOPPED, Pool, PoolCounters
from .results import CallRecord, call_record, ms, to_result
from .sessions import SessionStore
from .slots import SlotRing
from .step_frame import split_step_answer
from .worker import Spawner, Worker, WorkerSpec, error_frame

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
# The adapter checks the defect count against the max_defects a call carries; the Runner sends a
# limit no result reaches, then cuts to its own limit with a warning instead of failing the call.
_ADAPTER_DEFECT_LIMIT = 1_000_000
_KNOWN_SESSIONS_PER_WORKER = 512  # below the adapter's session cache (1024)
_PROTOCOL_KEYS = ("type", "request_id", "timestamp_ms", "session_delta", "restart_worker")


@dataclass(frozen=True)
class _Placed:
    """A checked call whose frame sits in a worker's slot: what every phase of it sends."""

    call: ValidCall
    key: PackageKey
    session_id: str
    stored: bool  # a caller's session (kept by the Runner), not a throw-away one
    context: dict[str, Any]
    shared_mem_id: str
    image_meta: dict[str, Any]
    queue_ms: float
    transfer_ms: float


class Runner:
    """Resident supervised workers per package version, pid routing, sessions, results."""

    def __init__(self, config: RunnerConfig | None = None) -> None:
        self.config = config or RunnerConfig()
        self.swept = segment.sweep_stale_segments()
        legacy_transport.sweep()  # frame directories a dead Runner left behind
        self._lock = threading.RLock()
        self._pools: dict[PackageKey, Pool] = {}
        self._manifests: dict[PackageKey, dict[str, Any]] = {}
        self._routes: dict[str, PackageKey] = {}
        self._observers: list[Callable[[CallRecord], None]] = []
        self._counters = PoolCounters()
        self._sessions = SessionStore(self.config.session_ttl_s, self.config.session_log_lines)
        # Before any worker: removes what a SIGKILLed Runner left, makes this one a subreaper.
        self._containment = Containment(self.config.state_dir, self.config.worker_cgroups)
        self._spawner = Spawner(self._containment)
        self._closed = False
        # ids of throw-away sessions: unique per Runner without a uuid4 per call
        self._call_prefix = uuid.uuid4().hex
        self._call_numbers = itertools.count(1)
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
        root = Path(path).resolve()
        manifest = self._read_manifest(root)
        key = PackageKey(manifest["name"], manifest["version"])
        count = self.config.workers_per_package if workers is None else workers
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise RunnerError(f"workers must be a positive integer, not {count!r}")
        interpreter = sys.executable if python is None else str(python)
        if python is not None and not Path(interpreter).is_file():
            raise RunnerError(
                f"python interpreter {interpreter} does not exist", INCOMPATIBLE_PYTHON
            )
        # An execute-only manifest has no supported_pids: route() binds the pids asked for.
        pids = [str(p) for p in manifest.get("supported_pids") or []]
        exonly_manifest = manifest_api(manifest) == EXECUTE_ONLY
        with self._lock:
            existing = self._pools.get(key)
            if activate:
                self._check_conflicts(pids, key)
            if existing is not None and existing.state not in (FAILED, STOPPED):
                if activate:
                    self._routes.update(dict.fromkeys(pids, key))
                return key
        if existing is not None:
            existing.stop()
        if transport not in legacy_transport.TRANSPORTS:
            raise RunnerError(f"transport must be one of {legacy_transport.TRANSPORTS}")
        spec = WorkerSpec(key.name, key.version, root, interpreter, transport)
        pool = Pool(
            spec,
            self.config,
            self._spawner,
            count,
            self._on_log,
            self._counters,
            lambda owner: SlotRing(
                owner,
                # an execute-only call holds two slots at once (current and guide frame)
                max(2, self.config.slots_per_worker)
                if exonly_manifest
                else self.config.slots_per_worker,
                self.config.slot_initial_bytes,
            ),
        )
        with self._lock:
            self._pools[key] = pool
            self._manifests[key] = manifest
        pool.start()
        if (
            pool.state not in (FAILED, STOPPED)
            and (execute_only.package_api(pool.info) == EXECUTE_ONLY) != exonly_manifest
        ):
            pool.stop()
            with self._lock:
                if self._pools.get(key) is pool:
                    del self._pools[key]
                    self._manifests.pop(key, None)
            raise RunnerError(
                f"{root / 'manifest.json'} declares the "
                f"{'execute-only' if exonly_manifest else 'lifecycle'} API but the entry class "
                f"implements the other one (execute-only manifests have no supported_pids)",
                MANIFEST_MISSING,
            )
        with self._lock:
            if self._closed:
                pool.stop()
                raise RunnerError("the runner was closed while the package was loading")
            if activate:
                self._check_conflicts(pids, key)
                self._routes.update(dict.fromkeys(pids, key))
        return key

    def _read_manifest(self, root: Path) -> dict[str, Any]:
        path = root / "manifest.json"
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise RunnerError(f"{path} not found", MANIFEST_MISSING) from exc
        except (OSError, ValueError) as exc:
            raise RunnerError(f"{path} is not readable JSON: {exc}", MANIFEST_MISSING) from exc
        problems = check_manifest(manifest)
        if problems:
            text = "; ".join(f"{p.where}: {p.message}" for p in problems[:5])
            raise RunnerError(f"invalid manifest {path}: {text}", problems[0].code)
        return dict(manifest)

    def _check_conflicts(self, pids: Iterable[str], key: PackageKey) -> None:
        clash = {p: self._routes[p] for p in pids if self._routes.get(p, key) != key}
        if clash:
            bound = ", ".join(f"{p} -> {k.name} {k.version}" for p, k in sorted(clash.items()))
            raise RunnerError(f"pids already routed elsewhere: {bound}", ACTIVATION_CONFLICT)

    def route(self, pids: Iterable[str], key: PackageKey | None) -> None:
        """Bind pids to a loaded package (all at once), or unbind them with None."""
        wanted = [str(p) for p in pids]
        with self._lock:
            if key is None:
                for pid in wanted:
                    self._routes.pop(pid, None)
                return
            key = PackageKey(*key)
            if key not in self._pools:
                raise RunnerError(f"package {key.name} {key.version} is not loaded", INVALID_PID)
            manifest = self._manifests[key]
            if manifest_api(manifest) == EXECUTE_ONLY:
                # any safe pid: an execute-only package serves whatever it is bound to
                unsafe = [p for p in wanted if not is_safe_name(p)]
                if unsafe:
                    raise RunnerError(f"pids {unsafe} are not safe names", INVALID_PID)
                self._routes.update(dict.fromkeys(wanted, key))
                return
            supported = {str(p) for p in manifest["supported_pids"]}
            missing = [p for p in wanted if p not in supported]
            if missing:
                raise RunnerError(
                    f"pids {missing} are not in the supported_pids of {key.name} {key.version}",
                    INVALID_PID,
                )
            self._routes.update(dict.fromkeys(wanted, key))

    def unload(self, key: PackageKey, drain_timeout_s: float = 30.0) -> None:
        """Unroute a package, wait for its in-flight calls, then stop its workers."""
        key = PackageKey(*key)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                raise RunnerError(f"package {key.name} {key.version} is not loaded", INVALID_PID)
            for pid in [p for p, k in self._routes.items() if k == key]:
                del self._routes[pid]
        if not pool.drain(drain_timeout_s):
            log.warning("unload of %s %s: calls still running after drain", *key)
        pool.stop()
        with self._lock:
            if self._pools.get(key) is pool:
                del self._pools[key]
                self._manifests.pop(key, None)

    def routes(self) -> dict[str, PackageKey]:
        """Return the current pid -> package routing."""
        with self._lock:
            return dict(self._routes)

    def packages(self) -> list[dict[str, Any]]:
        """Loaded packages: name, version, state, workers, info, routed pids."""
        with self._lock:
            pools = list(self._pools.items())
            routes = dict(self._routes)
        out = []
        for key, pool in pools:
            item = pool.describe()
            item["pids"] = sorted(p for p, k in routes.items() if k == key)
            out.append(item)
        return out

    def package_info(self, key: PackageKey) -> dict[str, Any]:
        """Return the algorithm's get_info() of a loaded package."""
        with self._lock:
            pool = self._pools.get(PackageKey(*key))
        if pool is None:
            raise RunnerError(f"package {key[0]} {key[1]} is not loaded", INVALID_PID)
        return dict(pool.info or {})

    def add_call_observer(self, fn: Callable[[CallRecord], None]) -> None:
        """Call `fn` with a CallRecord after every answered phase."""
        with self._lock:
            self._observers.append(fn)

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
        results: list[Any] = self._invoke(("pre", "execute"), call)
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
        return self._invoke(("pre",), call)[0]

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
        return self._invoke(("execute",), call)[0]

    def _invoke(self, phases: tuple[str, ...], call: StepCall) -> list[dict[str, Any]]:
        """Run `phases` of one call on one worker; one result dict per phase that ran."""
        started = time.perf_counter()
        pid = call.pid
        pid_text = pid if isinstance(pid, str) else repr(pid)
        with self._lock:
            key = self._routes.get(pid) if isinstance(pid, str) else None
            pool = self._pools.get(key) if key is not None else None
            # Registered under the routing lock: a switch that unroutes this pool right after
            # must find this call in drain() (it is in flight), not stop the pool under it.
            if pool is not None:
                pool.enter()
        if key is None or pool is None:
            message = f"pid {pid_text} is not routed to any loaded package"
            refusal = error_frame(message, INVALID_PID)
            return self._answer(pid_text, None, phases[0], refusal, started)
        try:
            return self._invoke_routed(pool, key, started, phases, call)
        finally:
            pool.leave()

    def _answer(
        self,
        pid: str,
        key: PackageKey | None,
        phase: str,
        frame: dict[str, Any],
        started: float,
        timings: dict[str, float] | None = None,
    ) -> list[dict[str, Any]]:
        """A call answered without running (any further) phases: one result, observed."""
        result = to_result(frame, key, phase, timings or {}, started, self.config.max_defects)
        self._observe(pid, key, phase, result)
        return [result]

    def _invoke_routed(
        self,
        pool: Pool,
        key: PackageKey,
        started: float,
        phases: tuple[str, ...],
        raw: StepCall,
    ) -> list[dict[str, Any]]:
        first, pid = phases[0], raw.pid
        if execute_only.package_api(pool.info) == EXECUTE_ONLY:
            return execute_only.invoke(self, pool, key, started, phases, raw)
        unavailable = pool.unavailable()
        if unavailable is not None:
            return self._answer(pid, key, first, unavailable, started)
        refusal = execute_only.lifecycle_refusal(key.name, key.version, raw)
        if refusal is not None:
            return self._answer(pid, key, first, error_frame(refusal, INVALID_PARAMS), started)
        call = validate_call(raw, pool.info or {}, key)
        if isinstance(call, CallRefused):
            return self._answer(pid, key, first, error_frame(call.message, call.code), started)
        stored = call.session_id is not None
        sid: str = (
            call.session_id
            if call.session_id is not None
            else f"call-{self._call_prefix}-{next(self._call_numbers)}"
        )
        context = dict(call.session_context or {})
        record = self._sessions.touch(sid, context) if stored else None
        if record is not None:
            record.packages.add((key.name, key.version))
            context = record.context

        worker, error = pool.acquire(
            self.config.queue_timeout_ms / 1000, record.last_worker if record else None
        )
        queue_ms = ms(time.perf_counter() - started)
        if worker is None:
            assert error is not None
            return self._answer(pid, key, first, error, started, {"queue_ms": queue_ms})
        slot = None
        try:
            t_slot = time.perf_counter()
            try:
                slot, shm_name, meta = self._place_frame(worker, call)
            except (TimeoutError, RuntimeError, ValueError, OSError) as exc:
                frame_error = _placement_error(exc, call.frame.nbytes)
                return self._answer(pid, key, first, frame_error, started, {"queue_ms": queue_ms})
            if record is not None:
                record.last_worker = worker.id
            placed = _Placed(
                call=call,
                key=key,
                session_id=sid,
                stored=stored,
                context=context,
                shared_mem_id=shm_name,
                image_meta=meta,
                queue_ms=queue_ms,
                transfer_ms=ms(time.perf_counter() - t_slot),
            )
            return self._run_phases(pool, worker, phases, placed, started)
        finally:
            if slot is not None:
                slot.release()
            pool.release(worker)

    def _place_frame(self, worker: Worker, call: ValidCall) -> tuple[Any, str, dict[str, Any]]:
        """Put the frame where the worker reads it: (slot to release or None, name, image_meta)."""
        frame = call.frame
        if worker.frames_dir is not None:
            # A worker that kept the original SDK reads frames from files (removed after the call).
            array, space = frame, call.color_space
            if isinstance(frame, SharedFrame):  # a leased buffer: its pixels, as RGB
                meta = frame.image_meta(space, {})
                array, space = read_image_from_shared_memory(frame.name, meta, strict=True), "RGB"
            return legacy_transport.write_frame(worker.frames_dir, array, space, call.extra_meta)
        if isinstance(frame, SharedFrame):
            # A leased segment: the worker reads the client's own buffer, no copy.
            space = call.color_space
            if frame.channels == 1:
                space = "GRAY"
            elif space == "GRAY":
                raise ValueError(f"color_space GRAY does not fit {frame.channels} channels")
            return None, frame.name, frame.image_meta(space, call.extra_meta)
        slot = worker.ring.acquire(frame.nbytes, self.config.queue_timeout_ms / 1000)
        try:
            meta = slot.write_frame(frame, call.color_space, **call.extra_meta)
        except BaseException:
            slot.release()
            raise
        return slot, slot.name, meta

    def _run_phases(
        self,
        pool: Pool,
        worker: Worker,
        phases: tuple[str, ...],
        placed: _Placed,
        started: float,
    ) -> list[dict[str, Any]]:
        """Send each phase to the worker; stop after a failed pre or a worker that left READY.

        pre + execute go as one `step` frame when the worker offers it (one round trip).
        """
        call, key, sid = placed.call, placed.key, placed.session_id
        results: list[dict[str, Any]] = []
        phase_start = started
        wire = phases
        # The adapter checked the result contract (it cannot trust the algorithm); the Runner
        # checks again only for a worker that did not say so (an original SDK's adapter).
        checked = "contract:v1" in worker.capabilities
        if (
            phases == ("pre", "execute")
            and self.config.step_frame
            and "step" in worker.capabilities
        ):
            wire = ("step",)
        for phase in wire:
            fields: dict[str, Any] = {
                "step_index": call.step_index,
                "pid": call.pid,
                "session": {"id": sid, "context": placed.context},
                "user_params": call.params,
                "shared_mem_id": placed.shared_mem_id,
                "image_meta": placed.image_meta,
                "max_defects": _ADAPTER_DEFECT_LIMIT,
            }
            version = 0
            if placed.stored:
                state, version = self._sessions.snapshot(sid)
                if worker.known_sessions.get(sid) != version:
                    fields["session_state"] = state
            if phase == "step":
                answer = worker.call(
                    phase,
                    fields,
                    self.config.pre_execute_timeout_ms,
                    then_timeout_ms=self.config.execute_timeout_ms,
                )
            else:
                answer = worker.call(phase, fields, self._timeout_ms(phase))
            for sub_phase, frame in split_step_answer(phase, answer):
                if placed.stored:
                    self._track_session(worker, sid, version, frame)
                timings = (
                    {"queue_ms": placed.queue_ms, "transfer_ms": placed.transfer_ms}
                    if not results
                    else {"queue_ms": 0.0, "transfer_ms": 0.0}
                )
                result = to_result(
                    frame,
                    key,
                    sub_phase,
                    timings,
                    phase_start,
                    self.config.max_defects,
                    call.width,
                    call.height,
                    checked=checked,
                )
                phase_start = time.perf_counter()
                results.append(result)
                self._observe(call.pid, key, sub_phase, result)
                if result["status"] == "OK":
                    pool.call_succeeded()
                if sub_phase == "pre" and result["status"] != "OK":
                    return results
            if worker.state != "READY":
                return results
        return results

    def _timeout_ms(self, phase: str) -> int:
        if phase == "pre":
            return self.config.pre_execute_timeout_ms
        return self.config.execute_timeout_ms

    def _track_session(
        self, worker: Worker, sid: str, version: int, answer: dict[str, Any]
    ) -> None:
        """Apply the result's delta and remember which state version the worker now holds."""
        known = worker.known_sessions
        known.pop(sid, None)
        if answer.get("type") != "result" or answer.get("session_id") != sid:
            return  # the worker never saw the session (or died): restore it next time
        new_version = self._sessions.apply(sid, answer.get("session_delta"))
        known[sid] = new_version if new_version is not None else version
        while len(known) > _KNOWN_SESSIONS_PER_WORKER:
            known.pop(next(iter(known)))

    def _observe(
        self, pid: str, key: PackageKey | None, phase: str, result: dict[str, Any]
    ) -> None:
        with self._lock:
            observers = list(self._observers)
        if not observers:
            return
        record = call_record(pid, key, phase, result)
        for fn in observers:
            try:
                fn(record)
            except Exception:
                log.exception("call observer failed")

    # ------------------------------------------------------------------ sessions

    def reset(self, session_id: str) -> None:
        """Restart a detection run: clear its state and call the algorithm's reset hook."""
        record = self._sessions.get(session_id)
        if record is None:
            return
        version = self._sessions.clear(session_id) or 0
        with self._lock:
            pools = [self._pools.get(PackageKey(*k)) for k in record.packages]
        for pool in pools:
            if pool is None or pool.unavailable() is not None:
                continue
            worker, _error = pool.acquire(self.config.queue_timeout_ms / 1000, record.last_worker)
            if worker is None:
                log.warning("reset of session %s: %s", session_id, _error and _error["message"])
                continue
            if not worker.supports("reset"):
                pool.release(worker)  # the state is cleared above; the class has no hook
                continue
            try:
                answer = worker.call(
                    "reset",
                    {"session": {"id": session_id, "context": record.context}, "session_state": {}},
                    self.config.hook_timeout_ms,
                )
                self._track_session(worker, session_id, version, answer)
                if answer.get("status") != "OK":
                    log.warning("reset of session %s: %s", session_id, answer.get("message"))
            finally:
                pool.release(worker)

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
            with self._lock:
                pools = list(self._pools.values())
            for pool in pools:
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
        with self._lock:
            pools = list(self._pools.values())
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
            pools = list(self._pools.values())
            self._routes.clear()
        threads = [threading.Thread(target=p.stop, daemon=True) for p in pools]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self._stop.set()
        self._supervisor.join(timeout=5)
        with self._lock:
            self._pools.clear()
        self._containment.close()
        self._spawner.stop()
        with contextlib.suppress(Exception):
            atexit.unregister(self._atexit)


def _placement_error(exc: BaseException, nbytes: int) -> dict[str, Any]:
    """The error frame of a frame that could not be placed in a worker's shared memory."""
    if isinstance(exc, (TimeoutError, RuntimeError, ValueError)):
        code = INVALID_PARAMS if isinstance(exc, ValueError) else TIMEOUT
        return error_frame(f"cannot place the frame in shared memory: {exc}", code)
    errno = getattr(exc, "errno", None)
    # /dev/shm full (ENOSPC) or out of memory: transient, say so
    return error_frame(
        f"shared memory exhausted: cannot place a {nbytes}-byte frame "
        f"({os.strerror(errno) if errno else exc})",
        UNKNOWN_ERROR,
        retryable=True,
    )
