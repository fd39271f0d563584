"""WireConnection against a real HTTP server on loopback: the answer shapes a server may send.

The Runner's uvicorn answers with Content-Length and keeps the connection; a proxy or another
server may chunk, close, or answer without a body. A real `http.server` on an ephemeral port
sends each of those on purpose.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from procvision_runner.client_wire import WireConnection


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/echo":
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (body[:3], body[3:]):
                self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")
        elif self.path == "/close":
            self.send_response(503)
            self.send_header("Connection", "close")
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"gone")
            self.close_connection = True
        elif self.path == "/until-close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body * 2)
            self.close_connection = True
        elif self.path == "/drop":
            self.close_connection = True  # no answer: the connection just ends
        elif self.path == "/empty":
            self.send_response(204)
            self.end_headers()


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(10)


def connect(srv: ThreadingHTTPServer) -> WireConnection:
    port = srv.server_address[1]
    return WireConnection("127.0.0.1", int(port), 10.0, f"127.0.0.1:{port}")


def test_keep_alive_chunked_close_and_empty_answers(server: ThreadingHTTPServer) -> None:
    conn = connect(server)
    try:
        assert conn.exchange("POST", "/echo", {}, b"hello") == (200, b"hello")
        big = bytes(range(256)) * 1024  # over the small-body limit: head and body in two writes
        assert conn.exchange("POST", "/echo", {"X-A": "1"}, memoryview(big)) == (200, big)
        assert conn.exchange("POST", "/chunked", {}, b"abcdefg") == (200, b"abcdefg")
        assert conn.is_open  # all of these kept the connection
        assert conn.exchange("POST", "/empty", {}, b"x") == (204, b"")
        assert conn.exchange("POST", "/close", {}, b"x") == (503, b"gone")
        assert not conn.is_open  # the server said close: the next call opens a new one
        assert conn.exchange("POST", "/until-close", {}, b"ab") == (200, b"abab")
        assert not conn.is_open
        assert conn.exchange("POST", "/echo", {}, b"again") == (200, b"again")
    finally:
        conn.close()


def test_a_connection_the_server_dropped_is_reported_then_reopened(
    server: ThreadingHTTPServer,
) -> None:
    conn = connect(server)
    try:
        assert conn.exchange("POST", "/echo", {}, b"1") == (200, b"1")
        with pytest.raises(http.client.RemoteDisconnected):
            conn.exchange("POST", "/drop", {}, b"2")
        assert not conn.is_open
        assert conn.exchange("POST", "/echo", {}, b"3") == (200, b"3")
    finally:
        conn.close()
