"""PROC_STRICT_STDIO=1: output an algorithm writes to stdout during a call fails that call (1010).

Without it the adapter points fd 1 at stderr and moves on (contract section 6). With it, fd 1 is
a pipe read by a thread that forwards every byte to stderr and counts the bytes written while a
call runs. A call's count is exact because the main thread writes a unique sync token through
the same pipe before and after the call and waits for the reader to reach it: everything the
call wrote (Python or C level) precedes the closing token in the pipe.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import uuid

STRICT_ENV = "PROC_STRICT_STDIO"
_TOKEN_HEAD = b"\x00PVSYNC"
_TOKEN_LEN = len(_TOKEN_HEAD) + 32 + 1
_PREVIEW = 4096
_SYNC_TIMEOUT_S = 5.0


def strict_from_env(environ: dict[str, str] | None = None) -> bool:
    """Whether PROC_STRICT_STDIO asks for strict stdout (1, true, yes, on)."""
    value = (environ if environ is not None else os.environ).get(STRICT_ENV, "")
    return value.strip().lower() in {"1", "true", "yes", "on"}


class StdoutGuard:
    """Counts what reaches fd 1 between begin() and end(); forwards everything to stderr."""

    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()  # both non-inheritable; fd 1 itself stays inheritable
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        os.dup2(write_fd, 1)
        os.close(write_fd)
        self._read_fd = read_fd
        self._lock = threading.Lock()
        self._active = False
        self._count = 0
        self._preview = b""
        self._waiting: bytes | None = None
        self._reached = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="strict-stdout", daemon=True)
        self._thread.start()

    def begin(self) -> None:
        """Start counting for one call (output written before it is not the call's)."""
        self._sync()
        with self._lock:
            self._active, self._count, self._preview = True, 0, b""

    def end(self) -> tuple[int, bytes]:
        """Stop counting; the number of bytes the call wrote to stdout and their start."""
        self._sync()
        with self._lock:
            self._active = False
            return self._count, self._preview

    def _sync(self) -> None:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        token = _TOKEN_HEAD + uuid.uuid4().hex.encode() + b"\x00"
        with self._lock:
            self._waiting = token
            self._reached.clear()
        try:
            os.write(1, token)  # below PIPE_BUF: one atomic write
        except OSError:
            return
        self._reached.wait(_SYNC_TIMEOUT_S)

    def _emit(self, data: bytes) -> None:
        if not data:
            return
        with self._lock:
            if self._active:
                self._count += len(data)
                if len(self._preview) < _PREVIEW:
                    self._preview += data[: _PREVIEW - len(self._preview)]
        with contextlib.suppress(OSError):
            os.write(2, data)

    def _pump(self) -> None:
        carry = b""
        while True:
            try:
                chunk = os.read(self._read_fd, 65536)
            except OSError:
                return
            if not chunk:
                self._emit(carry)
                return
            carry = self._scan(carry + chunk)

    def _scan(self, buf: bytes) -> bytes:
        """Emit output, consume sync tokens; return the tail that may start a token."""
        while True:
            at = buf.find(_TOKEN_HEAD)
            if at < 0:
                keep = len(_TOKEN_HEAD) - 1
                cut = max(0, len(buf) - keep)
                # keep only a tail that could be the start of a token
                while cut < len(buf) and not _TOKEN_HEAD.startswith(buf[cut:]):
                    cut += 1
                self._emit(buf[:cut])
                return buf[cut:]
            if len(buf) < at + _TOKEN_LEN:
                self._emit(buf[:at])
                return buf[at:]
            self._emit(buf[:at])
            token = buf[at : at + _TOKEN_LEN]
            with self._lock:
                if token == self._waiting:
                    self._waiting = None
                    self._reached.set()
            buf = buf[at + _TOKEN_LEN :]
