"""WorkerLoop: the protocol pipes, the reader thread, the heartbeat watchdog and the call loop."""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .. import protocol
from ..base import BaseAlgorithm
from ..errors import INVALID_RESULT, PROTOCOL_ERROR, UNKNOWN_ERROR
from ..generation import EXECUTE_ONLY, EXECUTE_ONLY_CAPABILITIES
from .calls import METHODS, CallHandler
from .fields import as_step
from .outcome import REPR_LIMIT, describe, log
from .sessions import DEFAULT_SESSION_CACHE
from .strict_stdio import StdoutGuard

__all__ = [
    "BUSY_MESSAGE",
    "EXIT_OK",
    "EXIT_START_FAILED",
    "EXIT_STREAM_BROKEN",
    "WATCHDOG_IDLE_S",
    "Worker",
    "WorkerLoop",
]

EXIT_OK = 0
EXIT_START_FAILED = 2
EXIT_STREAM_BROKEN = 3

# How often a disarmed heartbeat watchdog (interval 0) looks for new settings.
WATCHDOG_IDLE_S = 0.5

BUSY_MESSAGE = "busy: a call is already running in this worker; calls are never queued"


class WorkerLoop(CallHandler):
    """One algorithm instance served over the frame protocol."""

    def __init__(
        self,
        algorithm: Any,
        protocol_in: int,
        protocol_out: int,
        *,
        entry_point: str = "",
        session_capacity: int = DEFAULT_SESSION_CACHE,
        root: Path | None = None,
        stdout_guard: StdoutGuard | None = None,
    ) -> None:
        super().__init__(algorithm, session_capacity, root=root, stdout_guard=stdout_guard)
        self.entry_point = entry_point
        self.protocol_in = protocol_in
        self.protocol_out = protocol_out
        self.events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._call_pending = False
        self._closing = False
        self._signalled = False
        self.heartbeat_interval_ms = 0
        self.heartbeat_grace_ms = 0
        self._last_frame = time.monotonic()
        self._watchdog: threading.Thread | None = None
        self._parent_pid = os.getppid()

    # --- output

    def send(self, message: dict[str, Any]) -> bool:
        """Write one frame; False if the Runner's end of the pipe is gone.

        A message that cannot be encoded (an echoed value too large or too deep) goes out as an
        `error` frame (1010, request_id null) instead, so the worker always answers and lives on.
        """
        try:
            data = protocol.encode_frame(message)
        except Exception as exc:
            kind = message.get("type")
            text = f"{kind if isinstance(kind, str) else 'a'} frame could not be encoded: "
            text += describe(exc)[:REPR_LIMIT]
            log.error(text, error_code=PROTOCOL_ERROR)
            data = protocol.encode_frame(protocol.error(None, text, PROTOCOL_ERROR))
        return self._write(data)

    def _write(self, data: bytes) -> bool:
        """Write one encoded frame; False if the Runner's end of the pipe is gone."""
        try:
            with self._write_lock:
                view = memoryview(data)
                while view:
                    written = os.write(self.protocol_out, view)
                    view = view[written:]
        except OSError:
            self.events.put(("eof", "protocol output closed"))
            return False
        return True

    def capabilities(self) -> list[str]:
        """The capabilities this algorithm really has (every phase whose method it lacks is out)."""
        if self.api == EXECUTE_ONLY:
            return [*EXECUTE_ONLY_CAPABILITIES, "info", "contract:v1", protocol.LOG_MARKS]
        caps = ["ping", "call", "shutdown", "shared_memory:v1"]
        for phase in protocol.PHASES:
            method, _required = METHODS[phase]
            if callable(getattr(self.algorithm, method, None)):
                caps.append(phase)
        if "pre" in caps and "execute" in caps:
            caps.append("step")  # pre + execute in one call frame (adapter/step.py)
        caps.append("contract:v1")  # results are checked here (outcome.evaluate_result)
        caps.append(protocol.LOG_MARKS)  # serve() closes each call's stderr with a mark line
        return caps

    def hello(self) -> dict[str, Any]:
        """The worker's hello frame."""
        frame = protocol.hello_from_worker(tuple(self.capabilities()))
        frame["worker_pid"] = os.getpid()
        frame["entry_point"] = self.entry_point
        frame["base_algorithm"] = isinstance(self.algorithm, BaseAlgorithm)
        frame["api"] = self.api
        return frame

    # --- reader thread

    def start_reader(self) -> threading.Thread:
        """Start the daemon thread that decodes frames and answers pings."""
        thread = threading.Thread(target=self._read_loop, name="protocol-reader", daemon=True)
        thread.start()
        return thread

    def _read_loop(self) -> None:
        # However this thread ends, the main thread hears of it and never waits forever.
        stop: tuple[str, Any] = ("broken", "protocol reader stopped")
        try:
            stop = self._read_frames()
        except Exception as exc:
            log.error("protocol reader failed", error_code=PROTOCOL_ERROR, exc_info=exc)
            stop = ("broken", f"protocol reader failed: {describe(exc)}")
        finally:
            self.events.put(stop)

    def _read_frames(self) -> tuple[str, Any]:
        """Decode and dispatch frames until the stream ends; the (event, detail) that ended it."""
        stream = os.fdopen(self.protocol_in, "rb", buffering=1 << 16, closefd=False)
        while True:
            try:
                message = protocol.read_frame(stream)
            except protocol.FrameTooLarge as exc:
                self.send(
                    protocol.error(
                        None,
                        f"{exc}; the stream cannot be resynchronised, the worker exits",
                        PROTOCOL_ERROR,
                    )
                )
                return "broken", str(exc)
            except protocol.BadFrame as exc:
                self.send(protocol.error(None, str(exc), PROTOCOL_ERROR))
                continue
            except EOFError as exc:
                return "broken", str(exc)
            except (OSError, ValueError) as exc:
                return "eof", f"protocol input failed: {exc}"
            if message is None:
                return "eof", "stdin closed"
            self._last_frame = time.monotonic()
            try:
                self.dispatch(message, time.perf_counter())
            except Exception as exc:  # one frame the adapter mishandles must not stop the reader
                log.error("adapter failed on a frame", error_code=PROTOCOL_ERROR, exc_info=exc)
                self.send(
                    protocol.error(
                        None, f"frame could not be handled: {describe(exc)}", PROTOCOL_ERROR
                    )
                )

    def dispatch(self, message: dict[str, Any], received: float) -> None:
        """Handle one decoded frame on the reader thread (pings here, calls to the main thread)."""
        kind = message.get("type")
        if kind is None and "phase" in message:
            kind = "call"
        request_id = message.get("request_id")
        if kind == "ping":
            self.send(protocol.pong(request_id))
        elif kind == "call":
            with self._state_lock:
                refused = self._closing or self._call_pending
                if not refused:
                    self._call_pending = True
            if refused:
                text = "worker is shutting down" if self._closing else BUSY_MESSAGE
                self.send(protocol.error(request_id, text, PROTOCOL_ERROR, busy=True))
            else:
                self.events.put(("call", (message, received)))
        elif kind == "shutdown":
            with self._state_lock:
                self._closing = True
            self.events.put(("shutdown", request_id))
        elif kind == "hello":
            self._apply_hello(message)
        else:
            self.send(protocol.error(request_id, f"unknown message type {kind!r}", PROTOCOL_ERROR))

    def _apply_hello(self, message: dict[str, Any]) -> None:
        """A Runner hello; each one replaces the heartbeat settings (interval 0 = no watchdog)."""
        interval = as_step(message.get("heartbeat_interval_ms")) or 0
        grace = as_step(message.get("heartbeat_grace_ms")) or 0
        self.heartbeat_interval_ms = max(0, interval)
        self.heartbeat_grace_ms = max(0, grace)
        log.debug(
            "runner hello",
            runner_version=message.get("runner_version"),
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            heartbeat_grace_ms=self.heartbeat_grace_ms,
        )
        if self.heartbeat_interval_ms > 0 and self._watchdog is None:
            self._watchdog = threading.Thread(
                target=self._watch_heartbeat, name="heartbeat-watchdog", daemon=True
            )
            self._watchdog.start()

    def heartbeat_limit_s(self) -> float:
        """Silence after which the Runner counts as lost (3 intervals plus the grace)."""
        return (3 * self.heartbeat_interval_ms + self.heartbeat_grace_ms) / 1000.0

    def _watch_heartbeat(self) -> None:
        armed = True
        while True:
            interval_ms = self.heartbeat_interval_ms
            if interval_ms <= 0:
                # A later Runner hello replaces the settings; interval 0 means no watchdog (not
                # a 0 s limit) until a hello with an interval arms it again.
                if armed:
                    armed = False
                    log.info("heartbeat watchdog disarmed", heartbeat_interval_ms=interval_ms)
                time.sleep(WATCHDOG_IDLE_S)
                continue
            if not armed:
                armed = True
                log.info("heartbeat watchdog armed", heartbeat_interval_ms=interval_ms)
            time.sleep(min(max(interval_ms / 1000.0, 0.02), 1.0))
            if self.heartbeat_interval_ms <= 0:
                continue  # disarmed while asleep
            limit = self.heartbeat_limit_s()
            silent = time.monotonic() - self._last_frame
            orphaned = os.getppid() != self._parent_pid
            if silent > limit or orphaned:
                reason = "parent process gone" if orphaned else f"no frame for {silent:.1f} s"
                self.events.put(("lost", reason))
                return

    # --- main thread

    def on_signal(self, signum: int, _frame: Any) -> None:
        """SIGTERM/SIGINT: finish the running call, then teardown and exit 0."""
        if not self._signalled:
            self._signalled = True
            self.events.put(("signal", signum))

    def serve(self) -> int:
        """Run calls one at a time until shutdown, EOF, a signal or a broken stream; exit code."""
        while True:
            kind, payload = self.events.get()
            if kind == "call":
                message, received = payload
                try:
                    frame = self.handle_call(message, received)
                except Exception as exc:  # a bug here must not kill the worker silently
                    log.error("adapter failed on a call", exc_info=exc)
                    frame = protocol.error(
                        message.get("request_id"), f"adapter error: {describe(exc)}", UNKNOWN_ERROR
                    )
                with self._state_lock:
                    # cleared before sending, so the Runner's next call is never refused as busy
                    self._call_pending = False
                mark_logs(message.get("request_id"))
                self._send_result(frame)
                continue
            with self._state_lock:
                self._closing = True
            if kind == "shutdown":
                failure = self.teardown_once()
                ack = protocol.shutdown_ack(payload)
                if failure is not None:
                    ack["message"] = failure.message
                self.send(ack)
                return EXIT_OK
            log.info("worker stopping", reason=kind, detail=str(payload))
            self.teardown_once()
            return EXIT_STREAM_BROKEN if kind == "broken" else EXIT_OK

    def _send_result(self, frame: dict[str, Any]) -> None:
        if frame.get("type") != "result":
            self.send(frame)  # an error frame: send() has the fallback for what cannot be encoded
            return
        try:
            encoded = protocol.encode_frame(frame)
        except Exception as exc:  # too large, too deep, not JSON: answer, never die here
            reason = describe(exc)[:REPR_LIMIT]
        else:
            self._write(encoded)
            return
        data = frame.get("data")
        self.send(
            protocol.result(
                frame.get("request_id"),
                "ERROR",
                f"result cannot be sent: {reason}",
                INVALID_RESULT,
                {k: data.get(k) for k in ("phase", "step_index")} if isinstance(data, dict) else {},
                retryable=False,
                restart_worker=False,
                timings=frame.get("timings"),
            )
        )


def mark_logs(request_id: Any) -> None:
    """Flush the call's output, then write its log-mark line to stderr (protocol.LOG_MARKS)."""
    if not isinstance(request_id, str):
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()
    line = memoryview(protocol.log_mark_line(request_id))
    with contextlib.suppress(OSError):  # stderr gone: the Runner stops waiting at its deadline
        while line:
            line = line[os.write(2, line) :]


# The name the adapter's worker class had before the Runner's side got its own `Worker`.
Worker = WorkerLoop
