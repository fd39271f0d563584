"""Slow headers and too many connections against a real `procvision-runner serve` (raw sockets)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers.server import RunnerServer

HEADER_TIMEOUT_S = 1.0
BOUND = 3


def _server(root: Path, service: dict) -> RunnerServer:
    root.mkdir(parents=True)
    return RunnerServer(root / "store", config={"service": service})


@pytest.fixture
def slow(tmp_path: Path) -> Iterator[RunnerServer]:
    """A server with a short header deadline."""
    with _server(tmp_path / "slow", {"header_timeout_s": HEADER_TIMEOUT_S}) as srv:
        yield srv


@pytest.fixture
def bounded(tmp_path: Path) -> Iterator[RunnerServer]:
    """A server with a small connection bound (and deadlines far beyond the test)."""
    service = {"max_connections": BOUND, "header_timeout_s": 120, "keep_alive_s": 120}
    with _server(tmp_path / "bounded", service) as srv:
        yield srv


def _connect(server: RunnerServer) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=60)
    sock.settimeout(60)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (60 s deadline per read)."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _request(sock: socket.socket, path: str = "/healthz") -> bytes:
    """One complete keep-alive request and its complete response."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b"}"):
        chunk = sock.recv(65536)
        assert chunk, f"closed before the response ended: {data!r}"
        data += chunk
    return data


@pytest.mark.slow
def test_trickled_headers_are_closed_after_the_timeout(slow: RunnerServer) -> None:
    fresh, kept = _connect(slow), _connect(slow)
    try:
        assert _request(kept).startswith(b"HTTP/1.1 200")  # then its next request trickles
        started = time.monotonic()
        fresh.sendall(b"GET /healthz HTTP/1.1\r\n")
        kept.sendall(b"GET /healthz HTTP/1.1\r\n")
        closed: dict[str, bytes] = {}
        for n in range(3000):  # one header line per 20 ms until the server hangs up
            for name, sock in (("fresh", fresh), ("kept", kept)):
                if name in closed:
                    continue
                try:
                    sock.sendall(f"X-Slow-{n}: {n}\r\n".encode())
                except (BrokenPipeError, ConnectionResetError):
                    closed[name] = _read_until_closed(sock)
            if len(closed) == 2:
                break
            time.sleep(0.02)
        assert set(closed) == {"fresh", "kept"}, "a trickling client was never closed"
        assert time.monotonic() - started >= HEADER_TIMEOUT_S
        for answer in closed.values():
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert b'"error_code": "1006"' in answer
    finally:
        fresh.close()
        kept.close()
    # a normal request on the same server still works
    assert httpx.get(f"{slow.url}/healthz", timeout=60).status_code == 200


@pytest.mark.slow
def test_connections_over_the_bound_are_refused(bounded: RunnerServer) -> None:
    held = [_connect(bounded) for _ in range(BOUND)]
    try:
        for sock in held:  # answered, so the server has registered every one of them
            assert _request(sock).startswith(b"HTTP/1.1 200")
        extra = _connect(bounded)
        with extra:
            answer = _read_until_closed(extra)  # refused before sending a byte
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert b"retry-after: 1" in answer.lower() and b'"error_code": "1005"' in answer
    finally:
        held.pop().close()
    try:
        # one slot is free again once the server noticed the close
        deadline = time.monotonic() + 60
        while True:
            with _connect(bounded) as sock:
                answer = _request(sock)
            if answer.startswith(b"HTTP/1.1 200") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert answer.startswith(b"HTTP/1.1 200"), answer
    finally:
        for sock in held:
            sock.close()
