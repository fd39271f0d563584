"""One supervised adapter process: handshake, calls with deadlines, heartbeat, terminate/reap.

The OS side (environment, the spawner thread, the process group) is in process.py, the frame
I/O over the pipes in worker_channel.py and the stderr log records in worker_logs.py; this
module decides what the worker's answers (or their absence) mean.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from procvision_algorithm_sdk import protocol
from procvision_algorithm_sdk.errors import (
    GPU_OOM,
    INVALID_PARAMS,
    MODEL_NOT_FOUND,
    PROTOCOL_ERROR,
    TIMEOUT,
)

from . import legacy_transport
from .config import RunnerConfig
from .errors import WorkerStartError
from .process import ENV_ALLOWLIST, ProcessHandle, Spawner, WorkerSpec, worker_env
from .results import error_frame
from .states import Failure, FailureKind, WorkerState
from .worker_channel import FrameChannel, Pending
from .worker_logs import MAX_LOG_LINE, WorkerLogs

if TYPE_CHECKING:
    from .slots import SlotRing

# The log mark is in the stderr pipe before the result frame is sent; this only bounds how long
# the reader may take to get through the lines ahead of it.
LOG_MARK_WAIT_S = 2.0


class WorkerProcess:
    """One adapter process, its frame channel and the meaning of its answers."""

    def __init__(
        self,
        worker_id: str,
        spec: WorkerSpec,
        config: RunnerConfig,
        spawner: Spawner,
        on_log: Callable[[dict[str, Any]], None],
    ) -> None:
        self.id = worker_id
        self.spec = spec
        self.config = config
        self._spawner = spawner
        self.logs = WorkerLogs(spec.name, spec.version, worker_id, on_log, config.stderr_tail_lines)
        self.channel = FrameChannel(worker_id, self.logs, self._on_eof)
        self.process = ProcessHandle(config.kill_grace_ms)
        self.pid: int | None = None
        self.state = WorkerState.STARTING
        self.lost_because: Failure | None = None  # why it left service, when unexpectedly
        self.started_at = time.monotonic()
        self.calls = 0
        self.in_call = False
        self.leased = False  # handed to a caller by the pool (across pre and execute)
        self.slots: SlotRing | None = None  # attached by the pool before start()
        self.known_sessions: dict[str, int] = {}  # session id -> state version it holds
        self.retire = False  # the pool replaces it after the current call
        self.legacy = spec.transport == legacy_transport.TRANSPORT_FILES
        self.frames_dir: Path | None = None  # a legacy worker's private frame directory
        self._lock = self.channel.lock  # one lock: the channel's pending call and our state
        self._last_part: dict[str, Any] | None = None  # a step's pre frame, for call()
        self._next_ping = time.monotonic()
        self._request_prefix = f"{uuid.uuid4().hex[:8]}-"
        self._request_numbers = itertools.count(1)

    @property
    def failure(self) -> str | None:
        """Why the worker left service (a message), None while it serves."""
        return None if self.lost_because is None else self.lost_because.message

    @property
    def ring(self) -> SlotRing:
        """The slot ring the frames of this worker's calls go through."""
        if self.slots is None:
            raise RuntimeError(f"worker {self.id} has no slot ring (attached before start())")
        return self.slots

    def _record(self, kind: FailureKind, message: str) -> None:
        """Keep the first reason the worker left service; later ones are consequences."""
        if self.lost_because is None:
            self.lost_because = Failure(kind, message)

    def _on_eof(self) -> None:
        """stdout ended (called by the channel under the lock): out of service."""
        if self.state == WorkerState.READY:
            self.state = WorkerState.DEAD

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """Spawn, exchange hellos, run setup; WorkerStartError on any failure."""
        cfg = self.config
        startup_s = cfg.startup_timeout_ms / 1000
        self._spawn(startup_s)
        hello = protocol.hello_from_runner(
            _runner_version(), cfg.heartbeat_interval_ms, cfg.heartbeat_grace_ms
        )
        try:
            self.channel.handshake(
                hello, startup_s, self.spec.python, self.legacy, self.describe_exit
            )
        except WorkerStartError as exc:
            self.terminate(exc.message)
            raise
        self._next_ping = self.channel.last_pong + cfg.heartbeat_interval_ms / 1000
        self.state = WorkerState.READY
        if not any(self.supports(phase) for phase in ("setup", "info", "pre")):
            return  # the original execute-only adapter (SDK 0.3.x): no start-up call exists
        # A plain class without setup answers an explicit setup "does not implement setup";
        # it is set up implicitly (a no-op) before its first call instead.
        phase = "setup" if self.supports("setup") else "info"
        result = self.call(phase, {}, cfg.setup_timeout_ms)
        if result.get("status") != "OK":
            self.terminate("setup failed")
            raise WorkerStartError(
                f"setup failed: {result.get('message')}",
                str(result.get("error_code") or TIMEOUT),
            )

    def _spawn(self, startup_s: float) -> None:
        argv = [self.spec.python, "-m", "procvision_algorithm_sdk.adapter"]
        env = worker_env(self.spec.root, self.config)
        if self.legacy:
            self.frames_dir = legacy_transport.worker_dir(self.id)
            env.update(legacy_transport.worker_env_for(self.frames_dir))
        try:
            proc = self._spawner.spawn(argv, self.spec.root, env, startup_s)
        except Exception as exc:
            self.state = WorkerState.DEAD
            raise WorkerStartError(f"cannot start {argv[0]}: {exc}", MODEL_NOT_FOUND) from exc
        self.process.proc = proc
        self.pid = self.logs.pid = proc.pid
        self.channel.open(proc)

    def supports(self, phase: str) -> bool:
        """Whether the worker's hello advertised `phase` (a plain class lacks some hooks)."""
        return self.channel.supports(phase)

    @property
    def capabilities(self) -> frozenset[str]:
        """What the worker's hello offered (empty before the hello)."""
        return self.channel.capabilities

    # ------------------------------------------------------------------ calls

    def call(
        self,
        phase: str,
        fields: dict[str, Any],
        timeout_ms: int,
        *,
        then_timeout_ms: int | None = None,
    ) -> dict[str, Any]:
        """Run one phase and return its result frame; failures come back as ERROR frames.

        phase "step" (pre + execute in one frame): `timeout_ms` is pre's deadline and
        `then_timeout_ms` execute's, counted from pre's frame; the answer holds both frames
        (`{"phase": "step", "pre": ..., "execute": ...}`) once pre succeeded, else pre's frame.
        """
        answer = self._call(phase, fields, timeout_ms, then_timeout_ms)
        if phase != "step":
            return answer
        pending_part = self._last_part
        self._last_part = None
        if pending_part is None:
            return answer
        return {"type": "result", "phase": "step", "pre": pending_part, "execute": answer}

    def _call(
        self, phase: str, fields: dict[str, Any], timeout_ms: int, then_timeout_ms: int | None
    ) -> dict[str, Any]:
        # Unique per worker process is all matching needs; a counter is cheaper than uuid4.
        pending = Pending(f"{self._request_prefix}{next(self._request_numbers)}", phase)
        busy = self._begin(pending, fields)
        if busy is not None:
            return busy
        try:
            deadline = time.monotonic() + timeout_ms / 1000
            try:
                sent = self.channel.send(
                    protocol.call(pending.request_id, phase, **fields), deadline
                )
            except protocol.FrameTooLarge as exc:
                return error_frame(f"call frame too large: {exc}", PROTOCOL_ERROR)
            except (TypeError, ValueError, RecursionError) as exc:
                # Nothing was written: the worker is untouched and stays in service.
                return error_frame(f"{phase} call fields are not plain JSON: {exc}", INVALID_PARAMS)
            if phase == "step":
                phase = "pre"  # what a failure is about until pre's frame arrives
            if sent:
                pending.event.wait(max(0.0, deadline - time.monotonic()))
                if pending.frame is None and pending.part is not None and then_timeout_ms:
                    phase, timeout_ms = "execute", then_timeout_ms
                    deadline = pending.part_at + then_timeout_ms / 1000
                    pending.event.wait(max(0.0, deadline - time.monotonic()))
            return self._outcome(pending, phase, timeout_ms, sent)
        finally:
            with self._lock:
                self.channel.pending = None
                self.in_call = False
                self.logs.session_id = None
                self.logs.trace_id = None

    def _begin(self, pending: Pending, fields: dict[str, Any]) -> dict[str, Any] | None:
        """Make `pending` the call in flight; an error frame when the worker cannot take it."""
        session = fields.get("session") or {}
        context = session.get("context") or {}
        with self._lock:
            if self.state != WorkerState.READY or self.channel.pending is not None:
                return error_frame(
                    f"worker {self.id} is not available ({self.state.lower()})", TIMEOUT
                )
            self.channel.pending = pending
            self.in_call = True
            self.logs.session_id = session.get("id")
            trace = context.get("trace_id") if isinstance(context, dict) else None
            self.logs.trace_id = str(trace) if trace is not None else None
        return None

    def _outcome(self, pending: Pending, phase: str, timeout_ms: int, sent: bool) -> dict[str, Any]:
        """The answer of a call whose wait ended: its frame, or what its absence means."""
        self._last_part = pending.part
        if pending.part is not None and pending.part.get("restart_worker"):
            self.retire = True
        if pending.frame is not None:
            if protocol.LOG_MARKS in self.capabilities:
                # the call's stderr lines carry its session: read them all before it ends
                self.logs.wait_mark(pending.request_id, LOG_MARK_WAIT_S)
            self.calls += 1
            if pending.frame.get("restart_worker"):
                self.retire = True
            return pending.frame
        if pending.lost == FailureKind.MEMORY:
            return error_frame(f"{phase} failed: {self.failure}", GPU_OOM, retryable=False)
        if pending.lost == FailureKind.HEARTBEAT:
            return error_frame(
                f"{phase} failed: worker heartbeat lost (no pong for more than "
                f"{self.config.heartbeat_interval_ms + self.config.heartbeat_grace_ms} ms)",
                TIMEOUT,
                retryable=True,
            )
        if not sent:
            if self.channel.eof.is_set() or self.process.proc is None or not self._running():
                return self._crashed(phase)
            if self.channel.abandoned.is_set():
                return error_frame(
                    f"{phase} failed: the worker was stopped ({self.failure})",
                    TIMEOUT,
                    retryable=True,
                )
            self.terminate("stdin blocked", FailureKind.TIMEOUT)
            return self._timed_out(phase, timeout_ms)
        if pending.lost is not None:
            return self._crashed(phase)
        self.terminate(f"{phase} timed out", FailureKind.TIMEOUT)
        return self._timed_out(phase, timeout_ms)

    def _running(self) -> bool:
        return self.process.poll() is None

    def _timed_out(self, phase: str, timeout_ms: int) -> dict[str, Any]:
        self._record(FailureKind.TIMEOUT, f"{phase} timed out")
        return error_frame(f"{phase} timed out after {timeout_ms} ms", TIMEOUT, retryable=True)

    def _crashed(self, phase: str) -> dict[str, Any]:
        detail = self.describe_exit()  # reaps it, taking down its process group first
        self.channel.stderr_done.wait(1.0)  # let the last lines arrive before quoting them
        self._record(FailureKind.CRASH, f"crashed ({detail})")
        self.mark_dead()
        return error_frame(
            f"worker crashed during {phase} ({detail}){self.logs.tail_text()}",
            TIMEOUT,
            retryable=True,
        )

    # ------------------------------------------------------------------ supervision

    def heartbeat(self, now: float, enforce: bool = True) -> bool:
        """Send a ping when due; return False when the worker missed its grace period.

        `enforce=False` only pings: a worker still starting (setup, info, warm-up) is bounded by
        those phases' own deadlines, but the adapter exits after 3 intervals without a frame.
        """
        if self.state != WorkerState.READY or self.legacy:
            # The original adapter answers pings only between calls: its calls' deadlines and
            # its process exit supervise it instead.
            return True
        cfg = self.config
        silent = now - self.channel.last_pong
        if enforce and silent > (cfg.heartbeat_interval_ms + cfg.heartbeat_grace_ms) / 1000:
            return False
        if now >= self._next_ping:
            self._next_ping = now + cfg.heartbeat_interval_ms / 1000
            # One non-blocking attempt: a ping (< PIPE_BUF) is written whole or not at all, and
            # a worker whose pipe stays full misses its pongs and is declared lost.
            self.channel.send(protocol.ping(uuid.uuid4().hex[:12]), now, wait=False)
        return True

    def lose(self, reason: str, kind: FailureKind = FailureKind.HEARTBEAT) -> None:
        """Declare the worker gone (`kind` heartbeat or memory): wake its caller, terminate it."""
        self._record(kind, reason)
        with self._lock:
            pending = self.channel.pending
            if pending is not None:
                pending.lost = kind
                pending.event.set()
        self.terminate(reason, kind)

    def mark_dead(self) -> None:
        """Take the worker out of service (it will not accept calls)."""
        with self._lock:
            if self.state != WorkerState.STOPPED:
                self.state = WorkerState.DEAD

    def terminate(self, reason: str, kind: FailureKind = FailureKind.CRASH) -> None:
        """SIGTERM to its process group now, SIGKILL after the grace period (by `tick`)."""
        self._record(kind, reason)
        self.channel.abandoned.set()
        self.mark_dead()
        self.process.terminate()

    def tick(self, now: float) -> None:
        """Escalate a pending termination to SIGKILL once its grace period is over."""
        self.process.tick(now)

    def exited(self) -> bool:
        """Whether the process has been reaped (or never started)."""
        return self.process.exited()

    def describe_exit(self) -> str:
        """Say how the process ended: exit code or signal name (waits up to 1 s for it)."""
        return self.process.describe_exit()

    def shutdown(self, timeout_s: float) -> None:
        """Ask for teardown and exit; SIGTERM, then SIGKILL, when it does not comply; reap."""
        if self.process.proc is None:
            self.state = WorkerState.STOPPED
            return
        channel = self.channel
        # A worker already being terminated (timed out, lost, dead) gets no shutdown frame: it
        # cannot answer one, and waiting for it would hold close() for 2 x timeout_s.
        graceful = not (channel.abandoned.is_set() or channel.eof.is_set() or self.in_call)
        if graceful and self._running():
            channel.send(protocol.shutdown(uuid.uuid4().hex[:12]), time.monotonic() + 0.5)
            channel.shutdown_ack.wait(timeout_s)
            self.process.wait_exit(timeout_s)
        self.process.stop()
        self.reap()
        with self._lock:
            self.state = WorkerState.STOPPED

    def reap(self) -> None:
        """Kill what is left of the process group, reap it, end the reader threads, close pipes."""
        if self.process.proc is not None:
            self.process.kill()
        legacy_transport.remove_dir(self.frames_dir)
        self.channel.close(self.pid)

    def info(self) -> dict[str, Any]:
        """A snapshot for stats()."""
        return {
            "id": self.id,
            "pid": self.pid,
            "state": self.state.value,
            "calls": self.calls,
            "busy": self.in_call,
            "failure": self.failure,
            "uptime_s": round(time.monotonic() - self.started_at, 3),
        }


def _runner_version() -> str:
    from procvision_algorithm_sdk._version import __version__

    return __version__


# The name the Runner's worker class had before the adapter's side got its own (WorkerLoop).
Worker = WorkerProcess

__all__ = [
    "ENV_ALLOWLIST",
    "MAX_LOG_LINE",
    "Spawner",
    "Worker",
    "WorkerProcess",
    "WorkerSpec",
    "WorkerStartError",
    "error_frame",
    "worker_env",
]
