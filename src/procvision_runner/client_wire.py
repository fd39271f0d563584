"""The Python client's HTTP exchange: WireConnection (keep-alive HTTP/1.1) and its error type.

Why not `http.client`: on the lease path every call is one small form out and one JSON answer
in, and `http.client` spent 0.23 to 0.40 ms more per call, of a budget of a few ms, in building
its request and in parsing the answer's headers with the e-mail parser (side by side against
this exchange on one uvicorn server: `benchmarks/http_overheads.py`). This one writes the
request in one `sendall` (the body in a second for large bodies, with TCP_NODELAY so the kernel
does not hold it back) and reads the status line, the headers it needs and a Content-Length,
chunked or close-delimited body. HTTPS stays with `http.client`.
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any, TypeAlias

from procvision_algorithm_sdk.errors import INVALID_PARAMS, UNKNOWN_ERROR, ProcVisionError

__all__ = ["Connection", "RunnerHTTPError", "WireConnection", "exchange", "http_error"]

_SMALL_BODY = 64 * 1024  # sent in the same write as the head
_MAX_LINE = 64 * 1024
_MAX_HEADERS = 100


class WireConnection:
    """One keep-alive connection to `host:port` (or a Unix socket); reads and writes time out."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float,
        host_header: str,
        *,
        unix_path: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.host_header = host_header  # the URL's netloc (IPv6 hosts keep their brackets)
        self.unix_path = unix_path  # the Runner's local socket instead of TCP
        self._sock: socket.socket | None = None
        self._file: Any = None

    @property
    def is_open(self) -> bool:
        """Whether a connection is established (it may have been closed by the server since)."""
        return self._sock is not None

    def exchange(
        self, method: str, target: str, headers: dict[str, str], body: bytes | memoryview | None
    ) -> tuple[int, bytes]:
        """Send one request and return (status, body); raises OSError/HTTPException on failure."""
        if self._sock is None:
            self._connect()
        assert self._sock is not None
        size = 0 if body is None else len(body)
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host_header}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {size}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            if body is not None and 0 < size <= _SMALL_BODY:
                self._sock.sendall(head + bytes(body))
            else:
                self._sock.sendall(head)
                if body is not None and size:
                    self._sock.sendall(body)
            return self._read_response(method)
        except BaseException:
            self.close()
            raise

    def _connect(self) -> None:
        if self.unix_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.unix_path)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._file = sock.makefile("rb")

    def _read_response(self, method: str) -> tuple[int, bytes]:
        status_line = self._line()
        if not status_line:
            raise http.client.RemoteDisconnected("the server closed the connection")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise http.client.BadStatusLine(status_line.decode("latin-1", "replace"))
        status = int(parts[1])
        length, chunked, close = None, False, parts[0] == b"HTTP/1.0"
        for _ in range(_MAX_HEADERS):
            line = self._line()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            if key == b"content-length":
                length = int(value.strip())
            elif key == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif key == b"connection":
                close = value.strip().lower() == b"close"
        else:
            raise http.client.HTTPException("too many response headers")
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            data = b""
        elif chunked:
            data = self._chunked()
        elif length is not None:
            data = self._exactly(length)
        else:
            data, close = self._file.read(), True  # delimited by the end of the connection
        if close:
            self.close()
        return status, data

    def _line(self) -> bytes:
        line: bytes = self._file.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise http.client.LineTooLong("response line")
        return line

    def _exactly(self, n: int) -> bytes:
        data: bytes = self._file.read(n)
        if len(data) != n:
            raise http.client.IncompleteRead(data, n - len(data))
        return data

    def _chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self._line().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self._line() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(self._exactly(size))
            self._line()  # the CRLF after the chunk

    def close(self) -> None:
        """Close the connection (the next exchange opens a new one)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


Connection: TypeAlias = WireConnection | http.client.HTTPConnection


def exchange(
    conn: Connection, method: str, target: str, headers: dict[str, str], body: bytes | None
) -> tuple[int, bytes]:
    """One request on either kind of connection: (status, body)."""
    if isinstance(conn, WireConnection):
        return conn.exchange(method, target, headers, body)
    conn.request(method, target, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


class RunnerHTTPError(ProcVisionError):
    """An HTTP answer other than 2xx: `status`, `error_code` and `message` from its body."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(f"HTTP {status} ({error_code}): {message}", error_code=error_code)
        self.status = status
        self.message = message


def http_error(status: int, data: bytes) -> RunnerHTTPError:
    """The RunnerHTTPError of a non-2xx answer (its JSON error body when it has one)."""
    try:
        body = json.loads(data)
    except ValueError:
        body = None
    if isinstance(body, dict) and "error_code" in body:
        return RunnerHTTPError(status, str(body["error_code"]), str(body.get("message", "")))
    code = INVALID_PARAMS if 400 <= status < 500 else UNKNOWN_ERROR
    return RunnerHTTPError(status, code, data[:200].decode("utf-8", "replace"))
