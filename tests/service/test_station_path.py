"""The station's way in over real HTTP: frame leases, raw uploads, the Python client, the C library.

A real uvicorn server on an ephemeral port, a Runner with real worker processes, real shared
memory; the algorithm (tests/algos/runner/marker) answers NG with the box of a pure red marker.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from helpers.station_server import ALGOS, StationServer

from procvision_algorithm_sdk import segment as seg
from procvision_runner.client import RunnerClient, RunnerHTTPError

REPO = Path(__file__).resolve().parents[2]
C_DIR = REPO / "clients" / "c"
SHM = "/dev/shm"


def exists(name: str) -> bool:
    return os.path.exists(os.path.join(SHM, name))


def marked(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """A gradient frame with a pure red box (x, y, w, h): what the marker algorithm finds."""
    ys, xs = np.mgrid[0:height, 0:width]
    grey = ((xs + ys) % 200).astype(np.uint8)
    frame = np.repeat(grey[:, :, None], 3, axis=2)
    x, y, w, h = box
    frame[y : y + h, x : x + w] = (255, 0, 0)
    return frame


def rect_of(result: dict) -> tuple[int, int, int, int]:
    r = result["execute"]["data"]["defect_rects"][0]
    return (r["x"], r["y"], r["width"], r["height"])


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error_code", "message"} and body["error_code"] == code, body
    assert body["message"]
    return body


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StationServer]:
    root = tmp_path_factory.mktemp("station")
    with StationServer(root, [ALGOS / "marker"]) as srv:
        yield srv
        leases = srv.app.state.leases
        names = leases.names()
    assert not any(exists(n) for n in names), "the server left lease segments behind"


def lease(
    client: httpx.Client, who: str, h: int, w: int, c: int = 3, pid: int | None = None
) -> dict:
    body = {"height": h, "width": w, "channels": c}
    if pid is not None:
        body["client_pid"] = pid
    r = client.post("/frames", json=body, headers={"X-ProcVision-Client": who})
    assert r.status_code == 200, r.text
    return r.json()


def write(description: dict, frame: np.ndarray, seq: int) -> None:
    shm = seg.attach_segment(description["segment"])
    try:
        view = seg.payload_array(shm.buf, frame.shape if frame.ndim == 3 else (*frame.shape, 1))
        np.copyto(view, frame.reshape(view.shape))
        del view
        seg.set_sequence(shm.buf, seq)
    finally:
        seg.close_quietly(shm)


def inspect_lease(client: httpx.Client, who: str, lease_id: str, **fields: str) -> httpx.Response:
    data = {"pid": "m1", "step_index": "1", "frame": lease_id, **fields}
    return client.post("/inspect", data=data, headers={"X-ProcVision-Client": who})


@pytest.mark.slow
def test_python_client_leases_writes_inspects_and_reuses(server: StationServer) -> None:
    box = (40, 25, 17, 9)
    with RunnerClient(server.url) as client:
        assert client.transport == "lease"
        out = client.inspect("m1", 1, marked(120, 160, box), session_id="board-1")
        ex = out["execute"]
        assert out["pre_execute"]["status"] == "OK" and ex["status"] == "OK", out
        assert ex["data"]["result_status"] == "NG" and rect_of(out) == box
        # The worker read the leased segment itself: zero copies after the client's write.
        leased = server.app.state.leases.names()
        assert ex["debug"]["shared_mem_id"] in leased
        first = ex["debug"]["shared_mem_id"]
        clean = client.inspect("m1", 1, marked(120, 160, (0, 0, 0, 0)))
        assert clean["execute"]["data"]["result_status"] == "OK", clean
        assert clean["execute"]["debug"]["shared_mem_id"] == first  # the same buffer, reused
        # An explicit lease: fill its array in place (what a camera SDK does), commit, inspect.
        buf = client.lease(60, 80)
        buf.array[:] = marked(60, 80, (5, 6, 7, 8))
        buf.commit()
        out = client.inspect("m1", 1, buf)
        assert rect_of(out) == (5, 6, 7, 8)
        assert out["execute"]["debug"] == {"shared_mem_id": buf.segment, "shm_seq": 1}
        buf.release()
        assert not exists(buf.segment)
    assert not exists(first), "close() releases the client's leases"


def test_raw_upload_and_multipart_raw_give_the_same_verdict(server: StationServer) -> None:
    box = (3, 4, 5, 6)
    frame = marked(50, 70, box)
    with RunnerClient(server.url, transport="raw") as client:
        out = client.inspect("m1", 1, frame, user_params={"min_pixels": 1})
        assert rect_of(out) == box, out
        gray = client.inspect("m1", 1, frame[:, :, 1])
        assert gray["execute"]["data"]["result_status"] == "OK", gray
    with httpx.Client(base_url=server.url, timeout=60) as http:
        r = http.post(
            "/inspect",
            data={"pid": "m1", "step_index": "1", "width": "70", "height": "50"},
            files={"raw": ("f", frame.tobytes(), "application/octet-stream")},
        )
        assert r.status_code == 200, r.text
        assert rect_of(r.json()) == box
        # a raw body whose size is not the geometry's is bad input
        q = {"pid": "m1", "step_index": "1", "width": "70", "height": "50"}
        short = http.post("/inspect/raw", params=q, content=frame.tobytes()[:-1])
        assert_error(short, 422, "1006")
        long = http.post("/inspect/raw", params=q, content=frame.tobytes() + b"x")
        assert_error(long, 422, "1006")
        missing = http.post("/inspect/raw", params={"pid": "m1", "step_index": "1"}, content=b"")
        assert_error(missing, 422, "1006")


def test_forged_foreign_wrong_geometry_and_uncommitted_leases_are_clear_4xx(
    server: StationServer,
) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        d = lease(http, "cam-a", 30, 40)
        try:
            assert_error(inspect_lease(http, "cam-a", d["lease_id"]), 409, "1002")  # uncommitted
            write(d, marked(30, 40, (1, 1, 2, 2)), 1)
            forged = "fl_" + "x" * 24
            assert_error(inspect_lease(http, "cam-a", forged), 404, "1006")
            assert_error(inspect_lease(http, "cam-a", "../../etc"), 422, "1006")
            assert_error(inspect_lease(http, "cam-b", d["lease_id"]), 403, "1006")
            assert_error(inspect_lease(http, "cam-a", d["lease_id"], width="41"), 422, "1006")
            assert_error(inspect_lease(http, "cam-a", d["lease_id"], frame_seq="7"), 409, "1002")
            no_client = http.post(
                "/inspect", data={"pid": "m1", "step_index": "1", "frame": d["lease_id"]}
            )
            assert_error(no_client, 422, "1006")
            both = http.post(
                "/inspect",
                data={"pid": "m1", "step_index": "1", "frame": d["lease_id"]},
                files={"image": ("a.png", b"\x89PNG", "image/png")},
                headers={"X-ProcVision-Client": "cam-a"},
            )
            assert_error(both, 422, "1006")
            ok = inspect_lease(http, "cam-a", d["lease_id"], frame_seq="1")
            assert ok.status_code == 200 and rect_of(ok.json()) == (1, 1, 2, 2), ok.text
            # Only the payload and the sequence number are the client's to write.
            shm = seg.attach_segment(d["segment"])
            try:
                seg.write_header(shm.buf, seq=2, height=40, width=30, channels=3, payload_size=3600)
            finally:
                seg.close_quietly(shm)
            assert_error(inspect_lease(http, "cam-a", d["lease_id"]), 422, "1002")
            for bad in ({"height": 0, "width": 4}, {"height": 4, "width": 4, "channels": 2}):
                r = http.post("/frames", json=bad, headers={"X-ProcVision-Client": "cam-a"})
                assert_error(r, 422, "1006")
            assert_error(http.post("/frames", json={"height": 4, "width": 4}), 422, "1006")
            assert_error(
                http.delete(f"/frames/{d['lease_id']}", headers={"X-ProcVision-Client": "cam-b"}),
                403,
                "1006",
            )
        finally:
            r = http.delete(f"/frames/{d['lease_id']}", headers={"X-ProcVision-Client": "cam-a"})
            assert r.status_code == 200, r.text
        assert not exists(d["segment"])
        assert_error(
            http.get(f"/frames/{d['lease_id']}", headers={"X-ProcVision-Client": "cam-a"}),
            404,
            "1006",
        )


CLIENT_THAT_DIES = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from procvision_runner.client import RunnerClient
    client = RunnerClient(sys.argv[1])
    buf = client.lease(64, 64)
    buf.write(np.full((64, 64, 3), 7, np.uint8))
    print(buf.segment, flush=True)
    time.sleep(3600)  # killed here: after the write, before the call
    """
)


def test_a_client_killed_between_write_and_call_leaves_nothing_in_dev_shm(
    server: StationServer,
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CLIENT_THAT_DIES, server.url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        name = child.stdout.readline().strip()
        assert name and exists(name)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        if child.stdout is not None:
            child.stdout.close()
    deadline = time.monotonic() + 30
    while exists(name) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not exists(name)
    assert name not in server.app.state.leases.names()


def non_loopback_address() -> str | None:
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10)
        candidates = out.stdout.split()
    except (OSError, subprocess.SubprocessError):
        candidates = []
    candidates.append(socket.gethostbyname(socket.gethostname()))
    for address in candidates:
        if ":" in address or address.startswith("127."):
            continue
        with socket.socket() as s:
            try:
                s.bind((address, 0))
                return address
            except OSError:
                continue
    return None


@pytest.mark.slow
def test_leases_are_refused_off_loopback(tmp_path: Path) -> None:
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to serve on")
    token = "t0ken-station"
    service = {"token": token}
    with StationServer(tmp_path, [ALGOS / "marker"], host=address, service=service) as srv:
        headers = {"Authorization": f"Bearer {token}", "X-ProcVision-Client": "remote"}
        with httpx.Client(base_url=srv.url, timeout=60, headers=headers) as http:
            assert_error(http.post("/frames", json={"height": 8, "width": 8}), 403, "1006")
            r = http.post("/inspect", data={"pid": "m1", "step_index": "1", "frame": "fl_abcdefgh"})
            assert_error(r, 403, "1006")
        # The Python client on another host uploads instead.
        with RunnerClient(srv.url, token=token) as client:
            assert client.transport == "raw"
            out = client.inspect("m1", 1, marked(20, 30, (2, 3, 4, 5)))
            assert rect_of(out) == (2, 3, 4, 5)
            with pytest.raises(RunnerHTTPError) as exc:
                client.lease(8, 8)
            assert exc.value.status == 403 and exc.value.error_code == "1006"
        assert srv.app.state.leases.count("remote") == 0


@pytest.fixture(scope="module")
def c_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.fail("no C compiler (cc): .ci/run installs build-essential")
    out = tmp_path_factory.mktemp("c") / "example_station"
    cmd = [cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-o", str(out)]
    cmd += [str(C_DIR / "example_station.c"), str(C_DIR / "procvision_frame.c")]
    build = subprocess.run([*cmd, "-lrt"], capture_output=True, text=True, timeout=120)
    if build.returncode != 0:  # -lrt is only needed on old glibc
        build = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr
    return out


def test_the_c_example_leases_writes_and_reads_the_verdict(
    server: StationServer, c_example: Path
) -> None:
    port = str(server.port)
    ng = subprocess.run(
        [str(c_example), "127.0.0.1", port, "m1", "480", "640", "100", "50", "12"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ng.returncode == 0, ng.stderr
    assert ng.stdout.split() == ["verdict", "OK", "OK", "NG", "1", "100", "50", "12", "12"]
    ok = subprocess.run(
        [str(c_example), "127.0.0.1", port, "m1", "48", "64"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split() == ["verdict", "OK", "OK", "OK", "0", "0", "0", "0", "0"]
    leases = server.app.state.leases
    assert leases.count() == leases.count("~upload")  # the example released its lease
    unknown = subprocess.run(
        [str(c_example), "127.0.0.1", port, "zz", "8", "8"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unknown.returncode == 0, unknown.stderr
    assert unknown.stdout.split()[:3] == ["verdict", "ERROR", "-"]


def test_the_c_library_reports_http_refusals(server: StationServer, c_example: Path) -> None:
    bad = subprocess.run(
        [str(c_example), "127.0.0.1", str(server.port), "m1", "70000", "8"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1
    assert "HTTP 422 1006" in bad.stderr, bad.stderr


def test_results_are_json_with_the_documented_top_level(server: StationServer) -> None:
    with RunnerClient(server.url) as client:
        out = client.inspect("m1", 1, marked(10, 10, (0, 0, 1, 1)), phase="execute")
    assert out["status"] == "OK" and out["data"]["result_status"] == "NG", out
    json.dumps(out)


def operation_schema(doc: dict, method: str, template: str, status: int) -> dict | None:
    responses = doc["paths"][template][method.lower()]["responses"]
    response = responses.get(str(status)) or responses.get("default")
    assert response is not None, f"{method} {template} does not document {status}"
    content = response.get("content", {}).get("application/json")
    return None if content is None else content["schema"]


@pytest.mark.slow
def test_openapi_31_and_30_are_valid_and_describe_real_responses(server: StationServer) -> None:
    from jsonschema import Draft202012Validator
    from openapi_schema_validator import OAS30Validator
    from openapi_spec_validator import validate

    recorded: list[tuple[str, str, httpx.Response]] = []
    with httpx.Client(base_url=server.url, timeout=60) as http:
        doc31 = http.get("/openapi.json").json()
        doc30 = http.get("/openapi-3.0.json").json()
        assert doc31["openapi"].startswith("3.1") and doc30["openapi"] == "3.0.3"
        validate(doc31)
        validate(doc30)
        schemas = doc31["components"]["schemas"]
        for name in ("Rect", "StepResult", "PreExecuteResult", "ExecuteResult", "Timings"):
            assert name in schemas, name
        assert schemas["ExecuteData"]["properties"]["result_status"]["anyOf"][0]["enum"] == [
            "OK",
            "NG",
        ]

        def call(method: str, template: str, url: str, **kw: object) -> httpx.Response:
            r = http.request(method, url, **kw)
            recorded.append((method, template, r))
            return r

        who = {"X-ProcVision-Client": "schema-check"}
        d = call("POST", "/frames", "/frames", json={"height": 20, "width": 30}, headers=who).json()
        lid = d["lease_id"]
        call("GET", "/frames/{lease_id}", f"/frames/{lid}", headers=who)
        call("GET", "/frames/{lease_id}", "/frames/fl_unknownlease", headers=who)
        form = {"pid": "m1", "step_index": "1", "frame": lid}
        call("POST", "/inspect", "/inspect", data=form, headers=who)  # 409 uncommitted
        write(d, marked(20, 30, (1, 2, 3, 4)), 1)
        for phase in ("step", "pre", "execute"):
            r = call("POST", "/inspect", "/inspect", data={**form, "phase": phase}, headers=who)
            assert r.status_code == 200, r.text
        call("POST", "/inspect", "/inspect", data={**form, "pid": "nope"}, headers=who)
        call("POST", "/inspect", "/inspect", data={**form, "user_params": "[]"}, headers=who)
        q = {"pid": "m1", "step_index": "1", "height": "20", "width": "30"}
        call("POST", "/inspect/raw", "/inspect/raw", params=q, content=bytes(1800))
        call("POST", "/inspect/raw", "/inspect/raw", params=q, content=bytes(10))
        call("GET", "/pids/{pid}", "/pids/m1")
        call("GET", "/pids/{pid}", "/pids/unbound")
        call("GET", "/algorithms/{name}/{version}", "/algorithms/marker/1.0.0")
        call("GET", "/algorithms/{name}/{version}", "/algorithms/marker/9.9.9")
        call("DELETE", "/frames/{lease_id}", f"/frames/{lid}", headers=who)
        call("GET", "/healthz", "/healthz")
    assert {r.status_code for _, _, r in recorded} >= {200, 404, 409, 422}
    for doc, make in ((doc31, Draft202012Validator), (doc30, OAS30Validator)):
        for method, template, response in recorded:
            schema = operation_schema(doc, method, template, response.status_code)
            assert schema is not None, (method, template)
            root = {**schema, "components": doc["components"]}
            errors = list(make(root).iter_errors(response.json()))
            assert not errors, (doc["openapi"], method, template, response.text, errors[0])


@pytest.mark.slow
def test_a_package_and_a_pid_describe_steps_and_parameters(server: StationServer) -> None:
    with RunnerClient(server.url) as client:
        pkg = client.algorithm("marker", "1.0.0")
        pid = client.pid_info("m1")
    assert pkg["api_generation"] == "lifecycle" and pkg["supported_pids"] == ["m1"]
    assert pkg["steps_source"] == "get_info"
    (step,) = pkg["steps"]
    (param,) = step["params"]
    assert (step["index"], step["name"]) == (1, "find marker")
    assert param == {
        "key": "min_pixels",
        "type": "int",
        "description": "smallest marker",
        "default": 1,
        "min": 1,
        "max": 1000000,
        "unit": "px",
    }
    assert pid["package"] == {"name": "marker", "version": "1.0.0"} and pid["routed"] is True
    assert pid["steps"] == pkg["steps"] and pid["state"] == "READY"
