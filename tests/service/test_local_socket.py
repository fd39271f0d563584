"""The local socket: lease forms over a Unix socket, answered as `POST /inspect` answers them.

A real uvicorn server with its local socket under the store, a Runner with real workers, real
shared memory; the same forms go over HTTP (the lease lane, checked against the OpenAPI
document by the test server) and over the socket, and must get the same answers.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers.station_server import ALGOS, StationServer
from test_lease_lane import answered, lease_cases, leased, marked, outcome

from procvision_runner.client import RunnerClient
from procvision_runner.client_wire import WireConnection
from procvision_runner.service import ServiceConfig
from procvision_runner.service.local_socket import LocalReply, LocalRequest, LocalSocketServer

TOKEN = "sock-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
DEADLINE_S = 30.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StationServer]:
    root = tmp_path_factory.mktemp("sock")
    with StationServer(root, [ALGOS / "marker"], service={"token": TOKEN}) as srv:
        yield srv


def over_socket(
    path: str, fields: dict[str, str], headers: dict[str, str]
) -> tuple[int, dict[str, object]]:
    """POST /inspect with `fields` urlencoded over the local socket: (status, JSON body)."""
    import urllib.parse

    conn = WireConnection("localhost", 0, DEADLINE_S, "localhost", unix_path=path)
    try:
        body = urllib.parse.urlencode(fields).encode()
        status, data = conn.exchange("POST", "/inspect", {**FORM, **headers}, body)
    finally:
        conn.close()
    return status, json.loads(data)


def raw_exchange(path: str, request: bytes) -> bytes:
    """Send `request` bytes on a fresh connection; everything until the server closes it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(DEADLINE_S)
        sock.connect(path)
        sock.sendall(request)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


class _Response:
    """What `outcome` reads of an httpx response, from a socket answer."""

    def __init__(self, status: int, body: dict[str, object]) -> None:
        self.status_code = status
        self._body = body

    def json(self) -> dict[str, object]:
        return self._body


@pytest.mark.slow
def test_lease_forms_over_the_socket_answer_as_over_http(server: StationServer) -> None:
    with httpx.Client(base_url=server.url, timeout=60, headers=AUTH) as http:
        d = leased(http, "cam-a", marked(48, 64, (3, 4, 5, 6)))
        path = d["local_socket"]
        assert Path(path) == server.root / "store" / "runner.sock"
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        cases = lease_cases(d["lease_id"])
        before = answered(http)
        seen = {}
        for name, (fields, who) in cases.items():
            headers = {**AUTH, **({} if who is None else {"X-ProcVision-Client": who})}
            via_socket = outcome(_Response(*over_socket(path, fields, headers)))  # type: ignore[arg-type]
            via_http = outcome(http.post("/inspect", data=fields, headers=headers))
            assert via_socket == via_http, (name, via_socket, via_http)
            seen[name] = via_socket
        rects = [{"x": 3, "y": 4, "width": 5, "height": 6, "label": "marker", "score": 1.0}]
        assert seen["ok"] == (200, [("OK", None, None, None), ("OK", None, "NG", rects)])
        assert seen["forged lease"] == (404, "1006")
        assert seen["another client's lease"] == (403, "1006")
        assert seen["wrong geometry"] == (422, "1006")
        assert seen["stale sequence number"] == (409, "1002")
        # answered 200 (two ok cases, unknown pid, pre only) and counted, whichever way in
        assert answered(http) == before + 2 * 4
        r = http.delete(f"/frames/{d['lease_id']}", headers={"X-ProcVision-Client": "cam-a"})
        assert r.status_code == 200, r.text


def test_the_socket_is_guarded_and_takes_lease_calls_only(server: StationServer) -> None:
    with httpx.Client(base_url=server.url, timeout=60, headers=AUTH) as http:
        d = leased(http, "cam-c", marked(8, 8, (1, 1, 2, 2)))
    path = d["local_socket"]
    fields = {"pid": "m1", "step_index": "1", "frame": d["lease_id"]}
    who = {"X-ProcVision-Client": "cam-c"}
    status, body = over_socket(path, fields, who)
    assert (status, body["error_code"]) == (401, "9999"), body
    status, body = over_socket(path, fields, {**who, "Authorization": "Bearer nope"})
    assert status == 401, body
    status, body = over_socket(path, {"pid": "m1", "step_index": "1"}, {**who, **AUTH})
    assert (status, body["error_code"]) == (422, "1006"), body
    assert "frame lease" in str(body["message"])
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
    # not a lease call: pointed to HTTP
    answer = raw_exchange(path, b"GET /healthz HTTP/1.1\r\n" + auth + b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 404 "), answer
    assert b"served over HTTP" in answer
    # outside the HTTP subset the socket takes: answered with a code, then closed
    chunked = b"POST /inspect HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert raw_exchange(path, chunked).startswith(b"HTTP/1.1 501 ")
    huge = b"POST /inspect HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (64 * 1024**2)
    answer = raw_exchange(path, huge)
    assert answer.startswith(b"HTTP/1.1 413 ") and b'"error_code": "1006"' in answer
    assert raw_exchange(path, b"HELLO\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw_exchange(path, b"POST /inspect HTTP/1.1\r\nBad header\r\n\r\n").startswith(
        b"HTTP/1.1 400 "
    )
    with httpx.Client(base_url=server.url, timeout=60, headers={**AUTH, **who}) as http:
        assert http.delete(f"/frames/{d['lease_id']}").status_code == 200


def test_the_client_goes_through_the_socket_and_falls_back_to_tcp(server: StationServer) -> None:
    frame = marked(40, 50, (10, 12, 4, 3))
    with RunnerClient(server.url, token=TOKEN) as client:
        out = client.inspect("m1", 1, frame)
        assert out["execute"]["data"]["result_status"] == "NG", out
        path = client.socket_path
        assert path == str(server.root / "store" / "runner.sock")
    moved = Path(path).with_name("moved.sock")
    os.rename(path, moved)  # the path still advertised, but nothing there now
    try:
        with RunnerClient(server.url, token=TOKEN) as client:
            out = client.inspect("m1", 1, frame)
            assert out["execute"]["data"]["result_status"] == "NG", out
            assert client.socket_path is None  # TCP from now on
            out = client.inspect("m1", 1, frame)
            assert out["execute"]["data"]["defect_rects"][0]["x"] == 10, out
        with RunnerClient(server.url, token=TOKEN, local_socket=False) as client:
            assert client.inspect("m1", 1, frame)["execute"]["status"] == "OK"
            assert client.socket_path is None
    finally:
        os.rename(moved, path)


def test_service_config_refuses_a_bad_local_socket_setting() -> None:
    for bad in (5, "", None, True):
        with pytest.raises(ValueError, match="local_socket"):
            ServiceConfig.from_mapping({"local_socket": bad})
    assert ServiceConfig.from_mapping({"local_socket": "off"}).local_socket == "off"


# ---------------------------------------------------------------- the listener on its own


def _echo(request: LocalRequest) -> LocalReply:
    body = json.dumps(
        {"path": request.path, "body": request.body.decode(), "pid": request.peer_pid}
    )
    return LocalReply(200, body.encode(), [("content-type", "application/json")])


def _listener(path: Path, **kwargs: object) -> LocalSocketServer:
    made = LocalSocketServer(path, _echo, **kwargs)  # type: ignore[arg-type]
    made.start()
    return made


def test_a_dead_servers_socket_file_is_replaced_a_live_one_never(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # bound, never listening: what a killed server leaves
    dead.close()
    first = _listener(path)
    try:
        conn = WireConnection("localhost", 0, DEADLINE_S, "localhost", unix_path=str(path))
        status, data = conn.exchange("POST", "/x", {}, b"hi")
        conn.close()
        assert status == 200 and json.loads(data) == {
            "path": "/x",
            "body": "hi",
            "pid": os.getpid(),
        }
        second = LocalSocketServer(path, _echo)
        with pytest.raises(OSError, match="another server listens"):
            second.start()
        assert stat.S_ISSOCK(os.stat(path).st_mode)  # the live one's file is untouched
    finally:
        first.close()
    assert not path.exists()
    path.write_text("not a socket")
    with pytest.raises(OSError, match="is not a socket"):
        LocalSocketServer(path, _echo).start()
    assert path.read_text() == "not a socket"


def test_close_ends_idle_connections_and_the_bound_holds(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    server = _listener(path, max_connections=1, idle_s=300.0)
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        idle.settimeout(DEADLINE_S)
        idle.connect(str(path))
        idle.sendall(b"POST /a HTTP/1.1\r\nContent-Length: 1\r\n\r\nz")
        assert idle.recv(65536).startswith(b"HTTP/1.1 200 ")  # kept alive, now idle
        deadline = time.monotonic() + DEADLINE_S
        while server.connection_count() != 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # one connection is the bound: the next is answered 503 and closed
        answer = raw_exchange(str(path), b"POST /b HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503 ") and b"maximum of 1" in answer
        closer = threading.Thread(target=server.close)
        closer.start()
        closer.join(DEADLINE_S)
        assert not closer.is_alive()  # the idle connection did not hold the close up
        assert idle.recv(65536) == b""  # closed by the server
        assert server.connection_count() == 0
        assert not path.exists()
    finally:
        idle.close()
        server.close()
