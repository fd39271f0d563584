"""The frame channel to one worker: writes with deadlines, the stdout/stderr reader threads.

The channel matches each result frame to the one call in flight (`Pending`) and records the
liveness signs (hello, pongs, EOF); what a missing answer means is decided by the worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from procvision_algorithm_sdk import protocol
from procvision_algorithm_sdk.errors import MODEL_NOT_FOUND, PROTOCOL_ERROR

from .errors import WorkerStartError
from .states import FailureKind
from .worker_logs import WorkerLogs

__all__ = ["FrameChannel", "Pending"]

log = logging.getLogger("procvision.runner")


@dataclass
class Pending:
    """The one call in flight on a worker, filled by the stdout reader."""

    request_id: str
    phase: str
    event: threading.Event = field(default_factory=threading.Event)
    frame: dict[str, Any] | None = None
    lost: FailureKind | None = None  # set when the worker died or missed its heartbeat
    part: dict[str, Any] | None = None  # a step's pre frame, sent ahead of execute's
    part_at: float = 0.0


class FrameChannel:
    """Frame I/O over one worker's pipes; `lock` also guards the worker's state (shared)."""

    def __init__(self, worker_id: str, logs: WorkerLogs, on_eof: Callable[[], None]) -> None:
        self.worker_id = worker_id
        self.logs = logs
        self.lock = threading.Lock()  # the worker's lock: pending, state, in_call
        self.pending: Pending | None = None
        self.hello = threading.Event()
        self.hello_frame: dict[str, Any] | None = None
        self.start_error: dict[str, Any] | None = None
        self.eof = threading.Event()
        self.abandoned = threading.Event()  # the worker is being terminated: stop writing
        self.stderr_done = threading.Event()
        self.shutdown_ack = threading.Event()
        self.last_pong = time.monotonic()
        self._on_eof = on_eof  # called under `lock` when stdout ends
        self._proc: subprocess.Popen[bytes] | None = None
        self._write_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def open(self, proc: subprocess.Popen[bytes]) -> None:
        """Start the reader threads of a freshly spawned process."""
        assert proc.stdin and proc.stdout and proc.stderr
        self._proc = proc
        if os.name != "nt":
            os.set_blocking(proc.stdin.fileno(), False)
        for target, name in ((self._read_stdout, "out"), (self._read_stderr, "err")):
            thread = threading.Thread(target=target, name=f"{self.worker_id}-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def handshake(
        self,
        ours: dict[str, Any],
        timeout_s: float,
        python: str,
        legacy: bool,
        exit_detail: Callable[[], str],
    ) -> None:
        """Wait for the worker's hello, check its protocol major, send `ours`; WorkerStartError.

        `legacy`: the original SDK's adapter, whose hello carries no protocol version.
        """
        if not self.hello.wait(timeout_s):
            raise WorkerStartError(f"worker sent no hello within {round(timeout_s * 1000)} ms")
        if self.start_error is not None:
            err = self.start_error
            self.stderr_done.wait(2.0)  # its last lines (the traceback) reach the log first
            # The adapter's message is the diagnosis (exception, "did you mean"); its traceback
            # is in the worker's log records, not repeated here as one long line.
            raise WorkerStartError(
                f"worker failed to start: {err.get('message')}",
                str(err.get("error_code") or MODEL_NOT_FOUND),
            )
        hello = self.hello_frame
        if hello is None:
            raise WorkerStartError("worker exited before hello: " + exit_detail())
        theirs = hello.get("protocol_version")
        if not (legacy and theirs is None) and (
            _major(theirs) is None or _major(theirs) != _major(protocol.PROTOCOL_VERSION)
        ):
            raise WorkerStartError(
                f"worker speaks protocol version {theirs!r} but this Runner speaks "
                f"{protocol.PROTOCOL_VERSION!r}: the major versions must match "
                f"(sdk_version {hello.get('sdk_version')!r} in {python})",
                PROTOCOL_ERROR,
            )
        if not self.send(ours, time.monotonic() + timeout_s):
            raise WorkerStartError("worker closed its stdin: " + exit_detail())
        self.last_pong = time.monotonic()

    def supports(self, phase: str) -> bool:
        """Whether the worker's hello advertised `phase` (a plain class lacks some hooks)."""
        caps = (self.hello_frame or {}).get("capabilities")
        return not isinstance(caps, list) or phase in caps

    @property
    def capabilities(self) -> frozenset[str]:
        """What the worker's hello offered (empty before the hello)."""
        caps = (self.hello_frame or {}).get("capabilities")
        if not isinstance(caps, list):
            return frozenset()
        return frozenset(c for c in caps if isinstance(c, str))

    @property
    def writing(self) -> bool:
        """Whether a frame is being written (a full pipe holds the write here)."""
        return self._write_lock.locked()

    def send(self, message: dict[str, Any], deadline: float, *, wait: bool = True) -> bool:
        """Write one frame before `deadline`; False when the pipe is gone or stays full.

        With `wait=False` the frame is skipped (False) when another write is in progress: the
        supervisor's pings must never queue behind a large call frame to a worker that does
        not read. A write also stops once the worker is being terminated.
        """
        data = protocol.encode_frame(message)
        proc = self._proc
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
            return self._write_all(fd, memoryview(data), deadline)
        finally:
            self._write_lock.release()

    def _write_all(self, fd: int, view: memoryview, deadline: float) -> bool:
        while view:
            if self.abandoned.is_set():
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
        return True

    def close(self, pid: int | None) -> None:
        """Close stdin, end the reader threads, then close their pipes (after the exit).

        A pipe is closed only after its reader thread ended: closing it under a blocked read
        would free the fd number for reuse while the thread still reads from it. A reader that
        does not end (a process outside the group still holds the pipe) keeps its fd open.
        """
        proc = self._proc
        if proc is None:
            return
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
                    self.worker_id,
                    pid,
                    thread.name,
                )
                continue
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    # ------------------------------------------------------------------ readers

    def _read_stdout(self) -> None:
        proc = self._proc
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
            self.eof.set()
            self.hello.set()
            self.shutdown_ack.set()
            with self.lock:
                pending = self.pending
                if pending is not None and pending.frame is None:
                    pending.lost = pending.lost or FailureKind.CRASH
                    pending.event.set()
                self._on_eof()

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "pong":
            self.last_pong = time.monotonic()
            return
        if kind == "hello" and self.hello_frame is None:
            self.hello_frame = message
            self.last_pong = time.monotonic()
            self.hello.set()
            return
        if kind in ("result", "error"):
            self.last_pong = time.monotonic()  # any frame proves liveness
            if self._match(message):
                return
            if kind == "error" and self.hello_frame is None:
                self.start_error = message
                self.hello.set()
                return
            self.logs.runner("warning", f"unmatched {kind} frame: {message.get('message')}")
            return
        if kind == "shutdown":
            self.shutdown_ack.set()
            return
        self.logs.runner("warning", f"unknown frame type {kind!r} from worker")

    def _match(self, message: dict[str, Any]) -> bool:
        """Hand a result frame to the call it answers; False when no call waits for it."""
        with self.lock:
            pending = self.pending
            if pending is None or message.get("request_id") != pending.request_id:
                return False
            if message.get("step_part") == "pre" and pending.part is None:
                # pre of a step frame: execute runs on; the caller sleeps on
                pending.part, pending.part_at = message, time.monotonic()
                return True
            pending.frame = message
            pending.event.set()
            return True

    def _read_stderr(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stderr is not None
        try:
            self.logs.read(proc.stderr.fileno())
        finally:
            self.stderr_done.set()


def _major(version: object) -> int | None:
    """The major number of a "MAJOR.MINOR" protocol version, None when it is not one."""
    if not isinstance(version, str):
        return None
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else None
