"""The call path: a StepCall routed, checked, placed in a worker's slot, run phase by phase.

Errors caused by the call's input or by a worker come back as result dicts with codes; every
answered phase is shown to the call observers as a CallRecord.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from procvision_algorithm_sdk.errors import INVALID_PARAMS, INVALID_PID, TIMEOUT, UNKNOWN_ERROR
from procvision_algorithm_sdk.generation import EXECUTE_ONLY
from procvision_algorithm_sdk.shared_memory import read_image_from_shared_memory

from . import execute_only, legacy_transport
from .calls import CallRefused, PackageKey, StepCall, ValidCall, validate_call
from .config import RunnerConfig
from .leases import SharedFrame
from .pool import Pool
from .results import CallRecord, call_record, error_frame, ms, to_result
from .routing import PackageTable
from .sessions import SessionStore
from .states import WorkerState
from .step_frame import split_step_answer
from .worker import Worker

__all__ = ["CallPath"]

log = logging.getLogger("procvision.runner")

_KNOWN_SESSIONS_PER_WORKER = 512  # below the adapter's session cache (1024)


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


class CallPath:
    """Runs calls on the Runner's pools: routing lookup, checks, frame placement, phases."""

    def __init__(self, config: RunnerConfig, table: PackageTable, sessions: SessionStore) -> None:
        self.config = config
        self._table = table
        self._sessions = sessions
        self._observers: list[Callable[[CallRecord], None]] = []
        self._observers_lock = threading.Lock()
        # ids of throw-away sessions: unique per Runner without a uuid4 per call
        self._call_prefix = uuid.uuid4().hex
        self._call_numbers = itertools.count(1)

    def add_observer(self, fn: Callable[[CallRecord], None]) -> None:
        """Call `fn` with a CallRecord after every answered phase."""
        with self._observers_lock:
            self._observers.append(fn)

    def invoke(self, phases: tuple[str, ...], call: StepCall) -> list[dict[str, Any]]:
        """Run `phases` of one call on one worker; one result dict per phase that ran."""
        started = time.perf_counter()
        pid = call.pid
        routed = self._table.enter(pid)
        if routed is None:
            pid_text = pid if isinstance(pid, str) else repr(pid)
            message = f"pid {pid_text} is not routed to any loaded package"
            refusal = error_frame(message, INVALID_PID)
            return self.answer(pid_text, None, phases[0], refusal, started)
        key, pool = routed
        try:
            return self._invoke_routed(pool, key, started, phases, call)
        finally:
            pool.leave()

    def answer(
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
        self.observe(pid, key, phase, result)
        return [result]

    def observe(self, pid: str, key: PackageKey | None, phase: str, result: dict[str, Any]) -> None:
        """Show an answered phase to every call observer (an observer's failure is logged)."""
        with self._observers_lock:
            observers = list(self._observers)
        if not observers:
            return
        record = call_record(pid, key, phase, result)
        for fn in observers:
            try:
                fn(record)
            except Exception:
                log.exception("call observer failed")

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
            return self.answer(pid, key, first, unavailable, started)
        refusal = execute_only.lifecycle_refusal(key.name, key.version, raw)
        if refusal is not None:
            return self.answer(pid, key, first, error_frame(refusal, INVALID_PARAMS), started)
        call = validate_call(raw, pool.info or {}, key)
        if isinstance(call, CallRefused):
            return self.answer(pid, key, first, error_frame(call.message, call.code), started)
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
            return self.answer(pid, key, first, error, started, {"queue_ms": queue_ms})
        slot = None
        try:
            t_slot = time.perf_counter()
            try:
                slot, shm_name, meta = self._place_frame(worker, call)
            except (TimeoutError, RuntimeError, ValueError, OSError) as exc:
                frame_error = _placement_error(exc, call.frame.nbytes)
                return self.answer(pid, key, first, frame_error, started, {"queue_ms": queue_ms})
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
        call, key = placed.call, placed.key
        results: list[dict[str, Any]] = []
        phase_start = started
        # The adapter checked the result contract (it cannot trust the algorithm); the Runner
        # checks again only for a worker that did not say so (an original SDK's adapter).
        checked = "contract:v1" in worker.capabilities
        for phase in self._wire_phases(worker, phases):
            version, answer = self._send_phase(worker, phase, placed)
            for sub_phase, frame in split_step_answer(phase, answer):
                if placed.stored:
                    self.track_session(worker, placed.session_id, version, frame)
                timings = {"queue_ms": 0.0, "transfer_ms": 0.0}
                if not results:
                    timings = {"queue_ms": placed.queue_ms, "transfer_ms": placed.transfer_ms}
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
                self.observe(call.pid, key, sub_phase, result)
                if result["status"] == "OK":
                    pool.call_succeeded()
                if sub_phase == "pre" and result["status"] != "OK":
                    return results
            if worker.state != WorkerState.READY:
                return results
        return results

    def _wire_phases(self, worker: Worker, phases: tuple[str, ...]) -> tuple[str, ...]:
        """pre + execute as one `step` frame when the worker offers it, else phase by phase."""
        offered = self.config.step_frame and "step" in worker.capabilities
        return ("step",) if offered and phases == ("pre", "execute") else phases

    def _send_phase(
        self, worker: Worker, phase: str, placed: _Placed
    ) -> tuple[int, dict[str, Any]]:
        """One phase's call frame to the worker: (session state version sent, its answer)."""
        call, sid = placed.call, placed.session_id
        fields: dict[str, Any] = {
            "step_index": call.step_index,
            "pid": call.pid,
            "session": {"id": sid, "context": placed.context},
            "user_params": call.params,
            "shared_mem_id": placed.shared_mem_id,
            "image_meta": placed.image_meta,
            "max_defects": execute_only.ADAPTER_DEFECT_LIMIT,
        }
        version = 0
        if placed.stored:
            state, version = self._sessions.snapshot(sid)
            if worker.known_sessions.get(sid) != version:
                fields["session_state"] = state
        cfg = self.config
        if phase == "step":
            answer = worker.call(
                phase,
                fields,
                cfg.pre_execute_timeout_ms,
                then_timeout_ms=cfg.execute_timeout_ms,
            )
        else:
            timeout_ms = cfg.pre_execute_timeout_ms if phase == "pre" else cfg.execute_timeout_ms
            answer = worker.call(phase, fields, timeout_ms)
        return version, answer

    def track_session(self, worker: Worker, sid: str, version: int, answer: dict[str, Any]) -> None:
        """Apply the result's delta and remember which state version the worker now holds."""
        known = worker.known_sessions
        known.pop(sid, None)
        if answer.get("type") != "result" or answer.get("session_id") != sid:
            return  # the worker never saw the session (or died): restore it next time
        new_version = self._sessions.apply(sid, answer.get("session_delta"))
        known[sid] = new_version if new_version is not None else version
        while len(known) > _KNOWN_SESSIONS_PER_WORKER:
            known.pop(next(iter(known)))

    def reset(self, session_id: str) -> None:
        """Clear a session's state and call the algorithm's reset hook on each of its packages."""
        record = self._sessions.get(session_id)
        if record is None:
            return
        version = self._sessions.clear(session_id) or 0
        pools = [self._table.pool(PackageKey(*k)) for k in record.packages]
        for pool in pools:
            if pool is None or pool.unavailable() is not None:
                continue
            worker, error = pool.acquire(self.config.queue_timeout_ms / 1000, record.last_worker)
            if worker is None:
                log.warning("reset of session %s: %s", session_id, error and error["message"])
                continue
            try:
                if not worker.supports("reset"):
                    continue  # the state is cleared above; the class has no hook
                answer = worker.call(
                    "reset",
                    {"session": {"id": session_id, "context": record.context}, "session_state": {}},
                    self.config.hook_timeout_ms,
                )
                self.track_session(worker, session_id, version, answer)
                if answer.get("status") != "OK":
                    log.warning("reset of session %s: %s", session_id, answer.get("message"))
            finally:
                pool.release(worker)


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
