"""The local socket: a Unix socket where same-host clients' calls are answered in one thread each.

Why a second listener: through uvicorn, a lease call crosses four wake-ups more than the
in-process call (the client wakes the event loop, the loop wakes a worker thread for the
blocking Runner call, that thread wakes the loop again, the loop wakes the client), and on a
2-vCPU station each costs 0.1 to 0.3 ms. Here a connection's own thread reads the request, runs
the call and writes the answer: the client's write wakes the thread that calls the Runner, its
answer wakes the client. On the 2 MP lease path that is about 1.3 ms less per call
(`benchmarks/station_path.py`, docs/benchmarks.md). A Unix socket is on this host by
construction and guarded by its file mode (0660), so the lease rule (same host only) holds
without an address check.

Why not h11: it took 0.4 to 0.9 ms per request and answer on the same box. The socket takes a
narrow subset of HTTP/1.1, parsed here: keep-alive, Content-Length bodies up to a bound, no
chunked bodies, no upgrades; anything outside it is answered with a 4xx/5xx and the connection
is closed. What a request means is the handler's business (`service/local_lane.py`).
"""

from __future__ import annotations

import contextlib
import http
import json
import logging
import os
import socket
import stat
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from procvision_algorithm_sdk.errors import INVALID_PARAMS, UNKNOWN_ERROR

__all__ = ["LocalReply", "LocalRequest", "LocalSocketServer", "socket_path_problem"]

log = logging.getLogger("procvision_runner.service")

MAX_PATH_BYTES = 107  # sun_path holds 108 bytes with the terminating NUL
_MAX_HEAD = 16 * 1024
_MAX_HEADERS = 64
_READ = 64 * 1024
_JOIN_S = 10.0
_DRAIN_S = 1.0
_DRAIN_BYTES = 4 * 1024**2


@dataclass(frozen=True)
class LocalRequest:
    """One request read from the socket."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    peer_pid: int | None  # the client process (SO_PEERCRED), for the log


@dataclass(frozen=True)
class LocalReply:
    """One answer: status, body and its headers (Content-Length is added when sent)."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[LocalRequest], LocalReply]


class _Refused(Exception):
    """A request outside the subset the socket takes: answered, then the connection closes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def socket_path_problem(path: Path) -> str | None:
    """Why `path` cannot be a Unix socket's path, or None."""
    if len(os.fsencode(str(path))) > MAX_PATH_BYTES:
        return f"the local socket path is longer than {MAX_PATH_BYTES} bytes: {path}"
    if not path.parent.is_dir():
        return f"the local socket's directory does not exist: {path.parent}"
    return None


class LocalSocketServer:
    """A Unix-socket listener answering each connection's requests in that connection's thread."""

    def __init__(
        self,
        path: Path,
        handler: Handler,
        *,
        max_connections: int = 64,
        idle_s: float = 60.0,
        header_timeout_s: float = 10.0,
        max_body: int = 1024**2,
    ) -> None:
        self.path = Path(path)
        self.handler = handler
        self.max_connections = max_connections
        self.idle_s = idle_s
        self.header_timeout_s = header_timeout_s
        self.max_body = max_body
        self._listener: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._closed = False
        self._acceptor: threading.Thread | None = None

    def start(self) -> None:
        """Bind (replacing a dead server's socket file, never a live one's) and start accepting."""
        problem = socket_path_problem(self.path)
        if problem:
            raise OSError(problem)
        self._clear_stale()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.path))
            # before listen(): no client can connect while the mode is still the umask's
            os.chmod(self.path, 0o660)
            listener.listen(self.max_connections)
            info = os.stat(self.path)
        except BaseException:
            listener.close()
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            raise
        self._listener, self._inode = listener, (info.st_dev, info.st_ino)
        self._acceptor = threading.Thread(
            target=self._accept_loop, name="procvision-local-socket", daemon=True
        )
        self._acceptor.start()

    def _clear_stale(self) -> None:
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise OSError(f"{self.path} exists and is not a socket: not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(str(self.path))
        except OSError:
            os.unlink(self.path)  # nobody listens: a crashed server's socket file
            return
        finally:
            probe.close()
        raise OSError(f"another server listens on {self.path}")

    def close(self) -> None:
        """Stop accepting, end every connection (a running call finishes first), unlink."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            connections = dict(self._connections)
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        if self._acceptor is not None:
            self._acceptor.join(_JOIN_S)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RD)  # a thread waiting for a request wakes up
        for thread in connections.values():
            thread.join(_JOIN_S)
        self._unlink_own()

    def _unlink_own(self) -> None:
        # only the file this server bound: a successor may already have bound the path
        with contextlib.suppress(OSError):
            info = os.stat(self.path)
            if (info.st_dev, info.st_ino) == self._inode:
                os.unlink(self.path)

    def connection_count(self) -> int:
        """Connections open now."""
        with self._lock:
            return len(self._connections)

    # ------------------------------------------------------------------ connections

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                if len(self._connections) >= self.max_connections:
                    full = True
                else:
                    full = False
                    thread = threading.Thread(
                        target=self._serve, args=(conn,), name="procvision-local", daemon=True
                    )
                    self._connections[conn] = thread
            if full:
                message = (
                    f"the local socket holds its maximum of {self.max_connections} connections"
                )
                reply = _error_reply(503, UNKNOWN_ERROR, message)
                threading.Thread(target=_answer_and_close, args=(conn, reply), daemon=True).start()
                continue
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            pid = _peer_pid(conn)
            buffer = b""
            while True:
                try:
                    request, buffer, close = self._read_request(conn, buffer, pid)
                except _Refused as refused:
                    reply = _error_reply(refused.status, INVALID_PARAMS, refused.message)
                    _answer_and_close(conn, reply)
                    return
                if request is None:
                    return  # the client closed, or stayed idle past idle_s
                conn.sendall(_encode(self._answer(request), close=close))
                if close:
                    return
        except OSError:
            pass  # the client went away mid-request; nothing to answer
        finally:
            with self._lock:
                self._connections.pop(conn, None)
            conn.close()

    def _answer(self, request: LocalRequest) -> LocalReply:
        try:
            return self.handler(request)
        except Exception as exc:  # the handler answers errors itself; this is its own failure
            log.exception("the local socket's handler failed", exc_info=exc)
            return _error_reply(500, UNKNOWN_ERROR, f"internal error: {type(exc).__name__}")

    def _read_request(
        self, conn: socket.socket, buffer: bytes, pid: int | None
    ) -> tuple[LocalRequest | None, bytes, bool]:
        """(request or None at the end, bytes past it, whether to close after answering)."""
        conn.settimeout(self.idle_s)
        while b"\r\n\r\n" not in buffer:
            if len(buffer) > _MAX_HEAD:
                raise _Refused(431, f"request head larger than {_MAX_HEAD} bytes")
            try:
                chunk = conn.recv(_READ)
            except TimeoutError:
                if buffer:
                    raise _Refused(408, "the request head did not arrive in time") from None
                return None, b"", True
            if not chunk:
                return None, b"", True
            if not buffer:
                conn.settimeout(self.header_timeout_s)  # a started request must complete
            buffer += chunk
        head, _, rest = buffer.partition(b"\r\n\r\n")
        method, target, version, headers = _parse_head(head)
        if "transfer-encoding" in headers:
            raise _Refused(501, "chunked request bodies are not taken here: send Content-Length")
        try:
            size = int(headers.get("content-length", "0"))
        except ValueError:
            raise _Refused(400, "bad Content-Length") from None
        if size < 0:
            raise _Refused(400, "bad Content-Length")
        if size > self.max_body:
            raise _Refused(413, f"request body larger than {self.max_body} bytes")
        conn.settimeout(self.header_timeout_s)
        while len(rest) < size:
            chunk = conn.recv(max(_READ, size - len(rest)))
            if not chunk:
                return None, b"", True
            rest += chunk
        path, _, query = target.partition("?")
        close = version == "HTTP/1.0" or headers.get("connection", "").lower() == "close"
        request = LocalRequest(method, path, query, headers, rest[:size], pid)
        return request, rest[size:], close


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0") or not parts[1]:
        raise _Refused(400, "not an HTTP/1.x request line")
    if len(lines) - 1 > _MAX_HEADERS:
        raise _Refused(431, f"more than {_MAX_HEADERS} request headers")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            raise _Refused(400, "malformed request header")
        key = name.decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        if key in headers and key == "content-length" and headers[key] != text:
            raise _Refused(400, "conflicting Content-Length headers")
        headers[key] = text
    return parts[0].decode("latin-1"), parts[1].decode("latin-1"), parts[2].decode(), headers


def _peer_pid(conn: socket.socket) -> int | None:
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    try:
        pid, _uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, option, 12))
    except OSError:
        return None
    return pid or None


def _answer_and_close(conn: socket.socket, reply: LocalReply) -> None:
    """Answer, then close without losing the answer: a Unix socket closed with unread request
    bytes resets the connection, and the client may never read the answer. So: end our side,
    read what the client still sends (bounded in bytes and time), then close."""
    with contextlib.suppress(OSError):
        conn.settimeout(_DRAIN_S)
        conn.sendall(_encode(reply, close=True))
        conn.shutdown(socket.SHUT_WR)
        drained = 0
        while drained < _DRAIN_BYTES:
            chunk = conn.recv(_READ)
            if not chunk:
                break
            drained += len(chunk)
    conn.close()


def _error_reply(status: int, code: str, message: str) -> LocalReply:
    body = json.dumps({"error_code": code, "message": message}).encode()
    return LocalReply(status, body, [("content-type", "application/json")])


def _encode(reply: LocalReply, *, close: bool) -> bytes:
    try:
        reason = http.HTTPStatus(reply.status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {reply.status} {reason}"]
    lines += [f"{name}: {value}" for name, value in reply.headers]
    lines.append(f"content-length: {len(reply.body)}")
    if close:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + reply.body
