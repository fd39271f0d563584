"""One adapter subprocess driven frame by frame (`validate --full`), each read with a deadline."""

from __future__ import annotations

import contextlib
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from procvision_algorithm_sdk import protocol

__all__ = [
    "CALL_TIMEOUT_S",
    "EXIT_TIMEOUT_S",
    "START_TIMEOUT_S",
    "ProtocolBroken",
    "WorkerSession",
]

START_TIMEOUT_S = 60.0
CALL_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 10.0


class ProtocolBroken(Exception):
    """The worker's stdout carried something that is not a frame, or ended early."""


class WorkerSession:
    """One adapter subprocess driven frame by frame, every read with a deadline."""

    def __init__(self, project: Path, entry: str, env: dict[str, str]) -> None:
        self.frames: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "procvision_algorithm_sdk.adapter", "--entry", entry],
            cwd=str(project),
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.stderr: list[bytes] = []
        self._reader = threading.Thread(target=self._read_frames, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._err_reader.start()
        self._next = 0

    def _read_frames(self) -> None:
        assert self.proc.stdout is not None
        try:
            while True:
                frame = protocol.read_frame(self.proc.stdout.fileno())
                if frame is None:
                    self.frames.put(("eof", None))
                    return
                self.frames.put(("frame", frame))
        except Exception as exc:  # garbage on stdout: the protocol stream is polluted
            self.frames.put(("broken", f"{type(exc).__name__}: {exc}"))

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def receive(self, timeout_s: float) -> dict[str, Any]:
        """Return the next frame; ProtocolBroken on pollution, EOF or deadline."""
        try:
            kind, value = self.frames.get(timeout=timeout_s)
        except queue.Empty:
            raise ProtocolBroken(f"no frame within {timeout_s:.0f} s") from None
        if kind == "broken":
            raise ProtocolBroken(f"stdout carried bytes that are not a frame ({value})")
        if kind == "eof":
            raise ProtocolBroken("the worker closed stdout (it exited)")
        assert isinstance(value, dict)
        return value

    def send(self, message: dict[str, Any]) -> None:
        """Write one frame to the worker's stdin."""
        assert self.proc.stdin is not None
        protocol.write_frame(self.proc.stdin.fileno(), message)

    def call(self, phase: str, **fields: Any) -> dict[str, Any]:
        """Send a call and return its result frame (pongs and stray frames are errors)."""
        self._next += 1
        request_id = f"validate-{self._next}"
        self.send(protocol.call(request_id, phase, **fields))
        frame = self.receive(CALL_TIMEOUT_S)
        if frame.get("request_id") != request_id or frame.get("type") not in ("result", "error"):
            raise ProtocolBroken(
                f"expected the result of {request_id}, got a {frame.get('type')!r} frame "
                f"for {frame.get('request_id')!r}"
            )
        return frame

    def trailing_stdout(self) -> str | None:
        """After exit: describe anything left on stdout, or None when it ended cleanly."""
        try:
            kind, value = self.frames.get(timeout=EXIT_TIMEOUT_S)
        except queue.Empty:
            return "stdout did not close after the worker exited"
        if kind == "eof":
            return None
        if kind == "broken":
            return f"bytes that are not a frame after shutdown ({value})"
        return f"an unexpected frame after shutdown: {value!r}"[:200]

    def close(self) -> int | None:
        """Reap the worker (kill it if it does not exit in time); return its exit code."""
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            return self.proc.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=EXIT_TIMEOUT_S)
            return None
        finally:
            self._reader.join(timeout=EXIT_TIMEOUT_S)
            self._err_reader.join(timeout=EXIT_TIMEOUT_S)
            for stream in (self.proc.stdout, self.proc.stderr):
                with contextlib.suppress(OSError):
                    if stream is not None:
                        stream.close()

    def stderr_tail(self) -> str:
        """The last few stderr lines that are not log records, for a failure message."""
        text = [line.decode("utf-8", "replace").rstrip() for line in self.stderr[-8:]]
        lines = [t for t in text if t.strip() and protocol.parse_log_mark(t) is None][-3:]
        return (" | stderr: " + " / ".join(lines)) if lines else ""
