"""A small test client: spawns the adapter as a real subprocess and talks real frames to it.

Every read has a deadline; `close()` always reaps the process.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from procvision_algorithm_sdk import protocol

TESTS_DIR = Path(__file__).resolve().parent.parent
READ_DEADLINE_S = 20.0


class AdapterProcess:
    """One `python -m procvision_algorithm_sdk.adapter` process and its frame stream."""

    def __init__(
        self,
        tmp_path: Path,
        entry: str | None = "algos.adapter.probe:Probe",
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        expect_hello: bool = True,
    ) -> None:
        self.log_path = tmp_path / "probe.log"
        self.stderr_path = tmp_path / f"stderr-{id(self)}.txt"
        full_env = dict(os.environ)
        full_env.pop("PROC_ENTRY_POINT", None)
        full_env.pop("PROC_ALGO_ROOT", None)
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(TESTS_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        full_env["PROBE_LOG"] = str(self.log_path)
        full_env.update(env or {})
        argv = [sys.executable, "-m", "procvision_algorithm_sdk.adapter"]
        if entry is not None:
            argv += ["--entry", entry]
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=full_env,
            cwd=str(cwd) if cwd else None,
        )
        self.frames: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.raw_tail = b""
        self._ids = itertools.count(1)
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        self.hello: dict[str, Any] | None = None
        if expect_hello:
            self.hello = self.recv()
            assert self.hello["type"] == "hello", self.hello

    def _read_loop(self) -> None:
        assert self.proc.stdout is not None
        try:
            while True:
                frame = protocol.read_frame(self.proc.stdout)
                self.frames.put(frame)
                if frame is None:
                    return
        except Exception as exc:  # a corrupted stream is a test failure, reported by recv()
            self.frames.put({"type": "__stream_error__", "error": repr(exc)})

    def send(self, message: dict[str, Any]) -> None:
        """Write one frame to the worker's stdin."""
        self.send_raw(protocol.encode_frame(message))

    def send_raw(self, data: bytes) -> None:
        """Write raw bytes to the worker's stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def recv(self, timeout: float = READ_DEADLINE_S) -> dict[str, Any]:
        """The next frame; fails the test at the deadline, at EOF or on a corrupted stream."""
        try:
            frame = self.frames.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no frame within {timeout} s; stderr:\n{self.stderr()}") from None
        if frame is None:
            raise AssertionError(f"worker closed stdout; stderr:\n{self.stderr()}")
        assert frame.get("type") != "__stream_error__", (frame, self.stderr())
        return frame

    def recv_eof(self, timeout: float = READ_DEADLINE_S) -> None:
        """Assert the worker's stdout reaches EOF with no further frame."""
        frame = self.frames.get(timeout=timeout)
        assert frame is None, frame

    def next_id(self) -> str:
        return f"r{next(self._ids)}"

    def call(self, phase: str, **fields: Any) -> dict[str, Any]:
        """Send a call and return its answer (result or error frame)."""
        request_id = self.next_id()
        self.send(protocol.call(request_id, phase, **fields))
        frame = self.recv()
        assert frame.get("request_id") == request_id, frame
        return frame

    def step(
        self, phase: str, step_index: int = 1, session_id: str = "s1", **fields: Any
    ) -> dict[str, Any]:
        """A pre/execute call with a session and pid filled in."""
        fields.setdefault("pid", "P1")
        fields.setdefault("session", {"id": session_id, "context": {"product_code": "PC"}})
        return self.call(phase, step_index=step_index, **fields)

    def ping(self) -> dict[str, Any]:
        request_id = self.next_id()
        self.send(protocol.ping(request_id))
        frame = self.recv()
        assert frame == {**frame, "type": "pong", "request_id": request_id, "status": "OK"}
        return frame

    def wait(self, timeout: float = READ_DEADLINE_S) -> int:
        """Wait for the worker to exit; its exit code."""
        return self.proc.wait(timeout=timeout)

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def log_lines(self) -> list[str]:
        """The hook lines the probe algorithm recorded."""
        if not self.log_path.exists():
            return []
        return self.log_path.read_text(encoding="utf-8").splitlines()

    def close(self) -> None:
        """Kill the worker if it still runs, and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=READ_DEADLINE_S)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._stderr.close()

    def __enter__(self) -> AdapterProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
