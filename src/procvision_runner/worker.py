"""One supervised adapter process: handshake, calls with deadlines, heartbeat, kill/reap.

The OS side (environment, the spawner thread, process groups) is in process.py and the stderr
log records in worker_logs.py; this module speaks the frame protocol with one worker.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import select
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from .process import (
    ENV_ALLOWLIST,
    SIGKILL,
    Spawner,
    describe_exit,
    poll_group,
    signal_group,
    wait_exit,
    worker_env,
)
from .worker_logs import MAX_LOG_LINE, WorkerLogs

log = logging.getLogger("procvision.runner")


@dataclass
class _Pending:
    request_id: str
    phase: str
    event: threading.Event = field(default_factory=threading.Event)
    frame: dict[str, Any] | None = None
    lost: str | None = None  # set when the worker died or missed its heartbeat
    part: dict[str, Any] | None = None  # a step's pre frame, sent ahead of execute's
    part_at: float = 0.0


@dataclass
class WorkerSpec:
    """What a worker runs: the package's python and root, and its identity for logs."""

    name: str
    version: str
    root: Path
    python: str
    # "files": the package kept the original SDK; it speaks the earlier protocol, frames as files
    transport: str = legacy_transport.TRANSPORT_SHM


def error_frame(message: str, code: str, **extra: Any) -> dict[str, Any]:
    """A result-shaped frame for failures the Runner itself detects."""
    frame = protocol.result(None, "ERROR", message, code, {})
    frame.update(extra)
    return frame


class WorkerProcess:
    """One adapter process and the threads that read its stdout (frames) and stderr (logs)."""

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
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self.state = "STARTING"  # STARTING, READY, DEAD, STOPPED
        self.failure: str | None = None  # why it died, when it died unexpectedly
        self.started_at = time.monotonic()
        self.calls = 0
        self.in_call = False
        self.leased = False  # handed to a caller by the pool (across pre and execute)
        self.slots: Any = None  # the SlotRing, attached by the pool
        self.known_sessions: dict[str, int] = {}  # session id -> state version it holds
        self.retire = False  # the pool replaces it after the current call
        self.legacy = spec.transport == legacy_transport.TRANSPORT_FILES
        self.frames_dir: Path | None = None  # a legacy worker's private frame directory
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending: _Pending | None = None
        self._last_part: dict[str, Any] | None = None  # a step's pre frame, for call()
        self._hello = threading.Event()
        self._hello_frame: dict[str, Any] | None = None
        self._start_error: dict[str, Any] | None = None
        self._eof = threading.Event()
        self._abandoned = threading.Event()  # terminate() was called: stop writing to it
        self._stderr_done = threading.Event()
        self._shutdown_ack = threading.Event()
        self._last_pong = time.monotonic()
        self._next_ping = time.monotonic()
        self._kill_at: float | None = None
        self._threads: list[threading.Thread] = []
        self._request_prefix = f"{uuid.uuid4().hex[:8]}-"
        self._request_numbers = itertools.count(1)

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """Spawn, wait for hello, send ours, run setup; WorkerStartError on any failure."""
        cfg = self.config
        argv = [self.spec.python, "-m", "procvision_algorithm_sdk.adapter"]
        env = worker_env(self.spec.root, cfg)
        if self.legacy:
            self.frames_dir = legacy_transport.worker_dir(self.id)
            env.update(legacy_transport.worker_env_for(self.frames_dir))
        startup_s = cfg.startup_timeout_ms / 1000
        try:
            self.proc = self._spawner.spawn(argv, self.spec.root, env, startup_s)
        except Exception as exc:
            self.state = "DEAD"
            raise WorkerStartError(f"cannot start {argv[0]}: {exc}", MODEL_NOT_FOUND) from exc
        proc = self.proc
        assert proc is not None and proc.stdin and proc.stdout and proc.stderr
        self.pid = self.logs.pid = proc.pid
        if os.name != "nt":
            os.set_blocking(proc.stdin.fileno(), False)
        for target, name in ((self._read_stdout, "out"), (self._read_stderr, "err")):
            thread = threading.Thread(target=target, name=f"{self.id}-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        if not self._hello.wait(startup_s):
            self.terminate("no hello")
            raise WorkerStartError(f"worker sent no hello within {cfg.startup_timeout_ms} ms")
        if self._start_error is not None:
            err = self._start_error
            self._wait_exit(2.0)
            self.terminate("start error")
            raise WorkerStartError(
                f"worker failed to start: {err.get('message')}{self.logs.tail_text()}",
                str(err.get("error_code") or MODEL_NOT_FOUND),
            )
        if self._hello_frame is None:
            raise WorkerStartError("worker exited before hello: " + self.describe_exit())
        theirs = self._hello_frame.get("protocol_version")
        legacy_hello = self.legacy and theirs is None  # the original SDK's adapter has none
        if not legacy_hello and (
            _major(theirs) is None or _major(theirs) != _major(protocol.PROTOCOL_VERSION)
        ):
            self.terminate("incompatible protocol version")
            raise WorkerStartError(
                f"worker speaks protocol version {theirs!r} but this Runner speaks "
                f"{protocol.PROTOCOL_VERSION!r}: the major versions must match "
                f"(sdk_version {self._hello_frame.get('sdk_version')!r} in {self.spec.python})",
                PROTOCOL_ERROR,
            )
        hello = protocol.hello_from_runner(
            _runner_version(), cfg.heartbeat_interval_ms, cfg.heartbeat_grace_ms
        )
        if not self._send(hello, time.monotonic() + startup_s):
            raise WorkerStartError("worker closed its stdin: " + self.describe_exit())
        self._last_pong = time.monotonic()
        self._next_ping = self._last_pong + cfg.heartbeat_interval_ms / 1000
        self.state = "READY"
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

    def supports(self, phase: str) -> bool:
        """Whether the worker's hello advertised `phase` (a plain class lacks some hooks)."""
        caps = (self._hello_frame or {}).get("capabilities")
        return not isinstance(caps, list) or phase in caps

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
        request_id = f"{self._request_prefix}{next(self._request_numbers)}"
        session = fields.get("session") or {}
        context = session.get("context") or {}
        pending = _Pending(request_id, phase)
        with self._lock:
            if self.state != "READY" or self._pending is not None:
                return error_frame(
                    f"worker {self.id} is not available ({self.state.lower()})", TIMEOUT
                )
            self._pending = pending
            self.in_call = True
            self.logs.session_id = session.get("id")
            trace = context.get("trace_id") if isinstance(context, dict) else None
            self.logs.trace_id = str(trace) if trace is not None else None
        try:
            deadline = time.monotonic() + timeout_ms / 1000
            try:
                sent = self._send(protocol.call(request_id, phase, **fields), deadline)
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
            self._last_part = pending.part
            if pending.part is not None and pending.part.get("restart_worker"):
                self.retire = True
            if pending.frame is not None:
                self.calls += 1
                if pending.frame.get("restart_worker"):
                    self.retire = True
                return pending.frame
            if pending.lost == "memory":
                return error_frame(f"{phase} failed: {self.failure}", GPU_OOM, retryable=False)
            if pending.lost == "heartbeat":
                return error_frame(
                    f"{phase} failed: worker heartbeat lost (no pong for more than "
                    f"{self.config.heartbeat_interval_ms + self.config.heartbeat_grace_ms} ms)",
                    TIMEOUT,
                    retryable=True,
                )
            if not sent:
                if self._eof.is_set() or self.proc is None or self._poll() is not None:
                    return self._crashed(phase)
                if self._abandoned.is_set():
                    return error_frame(
                        f"{phase} failed: the worker was stopped ({self.failure})",
                        TIMEOUT,
                        retryable=True,
                    )
                self.terminate("stdin blocked")
                return self._timed_out(phase, timeout_ms)
            if pending.lost is not None:
                return self._crashed(phase)
            self.terminate(f"{phase} timed out")
            return self._timed_out(phase, timeout_ms)
        finally:
            with self._lock:
                self._pending = None
                self.in_call = False
                self.logs.session_id = None
                self.logs.trace_id = None

    def _timed_out(self, phase: str, timeout_ms: int) -> dict[str, Any]:
        self.failure = self.failure or f"{phase} timed out"
        return error_frame(f"{phase} timed out after {timeout_ms} ms", TIMEOUT, retryable=True)

    def _crashed(self, phase: str) -> dict[str, Any]:
        detail = self.describe_exit()  # reaps it, taking down its process group first
        self._stderr_done.wait(1.0)  # let the last lines arrive before quoting them
        self.failure = self.failure or f"crashed ({detail})"
        self.mark_dead()
        return error_frame(
            f"worker crashed during {phase} ({detail}){self.logs.tail_text()}",
            TIMEOUT,
            retryable=True,
        )

    def _send(self, message: dict[str, Any], deadline: float, *, wait: bool = True) -> bool:
        """Write one frame before `deadline`; False when the pipe is gone or stays full.

        With `wait=False` the frame is skipped (False) when another write is in progress: the
        supervisor's pings must never queue behind a large call frame to a worker that does
        not read. A write also stops once the worker is being terminated.
        """
        data = protocol.encode_frame(message)
        proc = self.proc
        if proc is None or proc.stdin is None:
            return False
        fd = proc.stdin.fileno()
        if wait:
            locked = self._write_lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
        else:
            locked = self._write_lock.acquire(blocking=False)
        if not locked:
            return False
        try:
            view = memoryview(data)
            while view:
                if self._abandoned.is_set():
                    return False
                try:
                    written = os.write(fd, view)
                    view = view[written:]
                    continue
                except BlockingIOError:
                    pass
                except (BrokenPipeError, OSError, ValueError):
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                with contextlib.suppress(OSError, ValueError):
                    select.select([], [fd], [], min(remaining, 0.1))
        finally:
            self._write_lock.release()
        return True

    # ------------------------------------------------------------------ supervision

    def heartbeat(self, now: float, enforce: bool = True) -> bool:
        """Send a ping when due; return False when the worker missed its grace period.

        `enforce=False` only pings: a worker still starting (setup, info, warm-up) is bounded by
        those phases' own deadlines, but the adapter exits after 3 intervals without a frame.
        """
        if self.state != "READY" or self.legacy:
            # The original adapter answers pings only between calls: its calls' deadlines and
            # its process exit supervise it instead.
            return True
        cfg = self.config
        silent = now - self._last_pong
        if enforce and silent > (cfg.heartbeat_interval_ms + cfg.heartbeat_grace_ms) / 1000:
            return False
        if now >= self._next_ping:
            self._next_ping = now + cfg.heartbeat_interval_ms / 1000
            # One non-blocking attempt: a ping (< PIPE_BUF) is written whole or not at all, and
            # a worker whose pipe stays full misses its pongs and is declared lost.
            self._send(protocol.ping(uuid.uuid4().hex[:12]), now, wait=False)
        return True

    def lose(self, reason: str, kind: str = "heartbeat") -> None:
        """Declare the worker gone (`kind` heartbeat or memory): wake its caller, terminate it."""
        self.failure = self.failure or reason
        with self._lock:
            pending = self._pending
            if pending is not None:
                pending.lost = kind
                pending.event.set()
        self.terminate(reason)

    def mark_dead(self) -> None:
        """Take the worker out of service (it will not accept calls)."""
        with self._lock:
            if self.state not in ("STOPPED",):
                self.state = "DEAD"

    def terminate(self, reason: str) -> None:
        """SIGTERM to its process group now, SIGKILL after the grace period (by `tick`)."""
        self.failure = self.failure or reason
        self._abandoned.set()
        self.mark_dead()
        if self.proc is None or self._poll() is not None:
            return
        if self._kill_at is None:
            self._kill_at = time.monotonic() + self.config.kill_grace_ms / 1000
            self._signal(signal.SIGTERM)

    def tick(self, now: float) -> None:
        """Escalate a pending termination to SIGKILL once its grace period is over."""
        if self.proc is None or self._poll() is not None:
            return
        if self._kill_at is not None and now >= self._kill_at:
            self._signal(SIGKILL)

    def exited(self) -> bool:
        """Whether the process has been reaped (or never started)."""
        return self.proc is None or self._poll() is not None

    def _signal(self, signum: int) -> None:
        """Signal the worker's whole process group (the helpers its algorithm started too)."""
        signal_group(self.proc, signum)

    def _poll(self) -> int | None:
        """Popen.poll() that takes an exited leader's process group down before reaping it."""
        return poll_group(self.proc)

    def _wait_exit(self, timeout_s: float) -> int | None:
        return wait_exit(self.proc, timeout_s)

    def describe_exit(self) -> str:
        """Say how the process ended: exit code or signal name (waits up to 1 s for it)."""
        return describe_exit(self.proc)

    def shutdown(self, timeout_s: float) -> None:
        """Ask for teardown and exit; SIGTERM, then SIGKILL, when it does not comply; reap."""
        proc = self.proc
        if proc is None:
            self.state = "STOPPED"
            return
        # A worker already being terminated (timed out, lost, dead) gets no shutdown frame: it
        # cannot answer one, and waiting for it would hold close() for 2 x timeout_s.
        graceful = not (self._abandoned.is_set() or self._eof.is_set() or self.in_call)
        if graceful and self._poll() is None:
            self._send(protocol.shutdown(uuid.uuid4().hex[:12]), time.monotonic() + 0.5)
            self._shutdown_ack.wait(timeout_s)
            self._wait_exit(timeout_s)
        if self._poll() is None:
            grace = self.config.kill_grace_ms / 1000
            if self._kill_at is not None:  # the grace period already started
                grace = max(0.0, self._kill_at - time.monotonic())
            self._signal(signal.SIGTERM)
            if self._wait_exit(grace) is None:
                self._signal(SIGKILL)
                self._wait_exit(5.0)
        self.reap()
        with self._lock:
            self.state = "STOPPED"

    def reap(self) -> None:
        """Kill what is left of the process group, reap it, end the reader threads, close pipes.

        A pipe is closed only after its reader thread ended: closing it under a blocked read
        would free the fd number for reuse while the thread still reads from it. A reader that
        does not end (a process outside the group still holds the pipe) keeps its fd open.
        """
        proc = self.proc
        if proc is None:
            legacy_transport.remove_dir(self.frames_dir)
            return
        if self._poll() is None:
            self._signal(SIGKILL)
            self._wait_exit(5.0)
        legacy_transport.remove_dir(self.frames_dir)
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        deadline = time.monotonic() + 2.0
        for thread, stream in zip(self._threads, (proc.stdout, proc.stderr), strict=False):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning(
                    "worker %s (pid %s): reader %s still blocked after exit (a process outside "
                    "its group holds the pipe); its fd stays open",
                    self.id,
                    self.pid,
                    thread.name,
                )
                continue
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    # ------------------------------------------------------------------ readers

    def _read_stdout(self) -> None:
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        # Popen's buffered reader: one read() syscall usually brings a whole small frame.
        stream: Any = proc.stdout
        try:
            while True:
                try:
                    message = protocol.read_frame(stream)
                except protocol.BadFrame as exc:
                    self.logs.runner("warning", f"bad frame from worker: {exc}")
                    continue
                if message is None:
                    break
                self._dispatch(message)
        except (protocol.ProtocolError, EOFError, OSError, ValueError) as exc:
            self.logs.runner("error", f"worker protocol stream broken: {exc}")
        finally:
            self._eof.set()
            self._hello.set()
            self._shutdown_ack.set()
            with self._lock:
                pending = self._pending
                if pending is not None and pending.frame is None:
                    pending.lost = pending.lost or "eof"
                    pending.event.set()
                if self.state == "READY":
                    self.state = "DEAD"

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "pong":
            self._last_pong = time.monotonic()
            return
        if kind == "hello" and self._hello_frame is None:
            self._hello_frame = message
            self._last_pong = time.monotonic()
            self._hello.set()
            return
        if kind in ("result", "error"):
            self._last_pong = time.monotonic()  # any frame proves liveness
            with self._lock:
                pending = self._pending
                if pending is not None and message.get("request_id") == pending.request_id:
                    if message.get("step_part") == "pre" and pending.part is None:
                        # pre of a step frame: execute runs on; the caller sleeps on
                        pending.part, pending.part_at = message, time.monotonic()
                        return
                    pending.frame = message
                    pending.event.set()
                    return
            if kind == "error" and self._hello_frame is None:
                self._start_error = message
                self._hello.set()
                return
            self.logs.runner("warning", f"unmatched {kind} frame: {message.get('message')}")
            return
        if kind == "shutdown":
            self._shutdown_ack.set()
            return
        self.logs.runner("warning", f"unknown frame type {kind!r} from worker")

    def _read_stderr(self) -> None:
        proc = self.proc
        assert proc is not None and proc.stderr is not None
        try:
            self.logs.read(proc.stderr.fileno())
        finally:
            self._stderr_done.set()

    @property
    def capabilities(self) -> frozenset[str]:
        """What the worker's hello offered (empty before the hello)."""
        hello = self._hello_frame or {}
        caps = hello.get("capabilities")
        if not isinstance(caps, list):
            return frozenset()
        return frozenset(c for c in caps if isinstance(c, str))

    def info(self) -> dict[str, Any]:
        """A snapshot for stats()."""
        return {
            "id": self.id,
            "pid": self.pid,
            "state": self.state,
            "calls": self.calls,
            "busy": self.in_call,
            "failure": self.failure,
            "uptime_s": round(time.monotonic() - self.started_at, 3),
        }


def _major(version: object) -> int | None:
    """The major number of a "MAJOR.MINOR" protocol version, None when it is not one."""
    if not isinstance(version, str):
        return None
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else None


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
