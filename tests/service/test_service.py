"""The HTTP service against a real `procvision-runner serve` subprocess (no package needed)."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers.server import RUNNER_CLI, RunnerServer, free_port
from helpers.store import hold_store_lock
from PIL import Image

TOKEN = "s3cret-station-token"


def png_bytes(
    width: int = 64, height: int = 48, color: tuple[int, int, int] = (30, 120, 60)
) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error_code", "message"}, body
    assert body["error_code"] == code, body
    assert body["message"]
    return body


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerServer]:
    root = tmp_path_factory.mktemp("service")
    config = {
        "service": {"max_upload_bytes": 64 * 1024, "max_request_bytes": 16 * 1024},
        "store": {"lock_timeout_s": 2.0},  # a query waiting for the lock would fail, not hang
    }
    with RunnerServer(root / "store", config=config) as srv:
        yield srv
    assert srv.proc is None


# one client for the module: a new httpx client loads the CA bundle (~60 ms CPU)
@pytest.fixture(scope="module")
def client(server: RunnerServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60.0) as c:
        yield c


@pytest.mark.slow
def test_health_readiness_and_openapi_are_served(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["ready"] is True and body["started"] is True and body["problems"] == []
    assert body["active"] == {}
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    for path, method in [
        ("/algorithms/install", "post"),
        ("/algorithms/validate", "post"),
        ("/algorithms/activate", "post"),
        ("/algorithms/switch", "post"),
        ("/algorithms/rollback", "post"),
        ("/algorithms/{name}/{version}", "delete"),
        ("/algorithms", "get"),
        ("/algorithms/active", "get"),
        ("/inspect", "post"),
        ("/sessions/{session_id}/reset", "post"),
        ("/sessions/{session_id}", "delete"),
        ("/sessions/{session_id}/logs", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ]:
        assert method in paths[path], (path, method)
    # FastAPI's own validation error schema is replaced by the service's error shape.
    assert "HTTPValidationError" not in doc.get("components", {}).get("schemas", {})
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_bad_input_is_422_with_code_1006(client: httpx.Client) -> None:
    png = png_bytes()
    # missing pid, non-integer step, negative step (0 is the original numbering), unknown phase
    assert_error(
        client.post("/inspect", data={"step_index": "1"}, files={"image": png}), 422, "1006"
    )
    assert_error(
        client.post("/inspect", data={"pid": "p001", "step_index": "x"}, files={"image": png}),
        422,
        "1006",
    )
    assert_error(
        client.post("/inspect", data={"pid": "p001", "step_index": "-1"}, files={"image": png}),
        422,
        "1006",
    )
    assert_error(
        client.post(
            "/inspect",
            data={"pid": "p001", "step_index": "1", "phase": "teardown"},
            files={"image": png},
        ),
        422,
        "1006",
    )
    # user_params must be a JSON object
    for bad in ("{not json", "[1, 2]"):
        assert_error(
            client.post(
                "/inspect",
                data={"pid": "p001", "step_index": "1", "user_params": bad},
                files={"image": png},
            ),
            422,
            "1006",
        )
    # no image at all, and both kinds at once
    assert_error(client.post("/inspect", data={"pid": "p001", "step_index": "1"}), 422, "1006")
    assert_error(
        client.post(
            "/inspect",
            data={"pid": "p001", "step_index": "1", "width": "2", "height": "2"},
            files={"image": png, "raw": bytes(12)},
        ),
        422,
        "1006",
    )
    # raw pixels whose size does not match width x height x channels
    body = assert_error(
        client.post(
            "/inspect",
            data={"pid": "p001", "step_index": "1", "width": "4", "height": "4", "channels": "3"},
            files={"raw": bytes(47)},
        ),
        422,
        "1006",
    )
    assert "48" in body["message"]
    # management bodies
    assert_error(client.post("/algorithms/activate", json={"name": "a"}), 422, "1006")
    assert_error(
        client.post("/algorithms/activate", json={"name": "a", "version": "1", "pids": []}),
        422,
        "1006",
    )
    assert_error(
        client.post(
            "/algorithms/rollback", content=b"{", headers={"content-type": "application/json"}
        ),
        422,
        "1006",
    )


def test_a_malformed_multipart_body_is_422_like_malformed_json(client: httpx.Client) -> None:
    # A body that claims multipart but does not parse is bad input, not a bad package: every
    # multipart endpoint answers with the documented 422 / 1006.
    boundary = "9cc651cd2c8d168349f50fede4c361ac"
    body = f"--{boundary}\r\nFalse--{boundary}--\r\n".encode()
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    for path in ("/inspect", "/algorithms/validate", "/algorithms/install"):
        assert_error(client.post(path, content=body, headers=headers), 422, "1006")
        documented = client.get("/openapi.json").json()["paths"][path]["post"]["responses"]
        assert "422" in documented


def test_json_fields_too_deep_or_not_plain_json_are_422(client: httpx.Client) -> None:
    png = png_bytes(8, 8)
    deep_object = '{"a":' * 150 + "1" + "}" * 150  # decodes, but deeper than the contract allows
    for field in ("user_params", "session_context"):
        for bad in ("[" * 10_000, '{"a": NaN}', '{"a": -Infinity}', deep_object):
            body = assert_error(
                client.post(
                    "/inspect",
                    data={"pid": "p001", "step_index": "1", field: bad},
                    files={"image": png},
                ),
                422,
                "1006",
            )
            assert field in body["message"]
    assert client.get("/healthz").json() == {"status": "ok"}


def test_undecodable_image_is_an_error_result_1002(client: httpx.Client) -> None:
    r = client.post(
        "/inspect",
        data={"pid": "p001", "step_index": "1"},
        files={"image": ("frame.png", b"\x89PNG\r\n\x1a\n garbage", "image/png")},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["execute"] is None
    pre = out["pre_execute"]
    assert pre["status"] == "ERROR" and pre["error_code"] == "1002" and pre["message"]
    # a real image of a format the API does not promise (GIF) is refused the same way
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="GIF")
    r = client.post(
        "/inspect",
        data={"pid": "p001", "step_index": "1", "phase": "pre"},
        files={"image": buf.getvalue()},
    )
    assert r.status_code == 200 and r.json()["error_code"] == "1002", r.text


def test_unknown_pid_is_answered_by_the_runner_with_1001(client: httpx.Client) -> None:
    for phase in ("pre", "execute"):
        r = client.post(
            "/inspect",
            data={"pid": "nobody", "step_index": "1", "phase": phase, "session_id": "s-1"},
            files={"image": png_bytes()},
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "ERROR" and r.json()["error_code"] == "1001"
    raw = client.post(
        "/inspect",
        data={"pid": "nobody", "step_index": "2", "width": "4", "height": "2", "channels": "1"},
        files={"raw": bytes(8)},
    )
    assert raw.status_code == 200 and raw.json()["pre_execute"]["error_code"] == "1001", raw.text


def test_unknown_names_versions_and_sessions_are_404(client: httpx.Client) -> None:
    assert_error(client.delete("/algorithms/nothing/1.0.0"), 404, "1006")
    assert_error(
        client.post(
            "/algorithms/activate", json={"name": "nothing", "version": "1.0", "pids": ["p001"]}
        ),
        404,
        "1006",
    )
    assert_error(
        client.post(
            "/algorithms/switch", json={"name": "nothing", "version": "1.0", "pids": ["p001"]}
        ),
        404,
        "1006",
    )
    assert_error(client.post("/algorithms/rollback", json={"pid": "p001"}), 404, "1001")
    assert_error(client.get("/sessions/never-seen/logs"), 404, "1006")
    assert_error(client.post("/sessions/never-seen/reset"), 404, "1006")
    assert_error(client.delete("/sessions/never-seen"), 404, "1006")
    assert_error(client.get("/no/such/route"), 404, "1006")


def test_unsafe_path_parameters_never_reach_the_store(
    client: httpx.Client, server: RunnerServer
) -> None:
    before = sorted(p.relative_to(server.store) for p in server.store.rglob("*"))
    for path in (
        "/algorithms/..%2F..%2Fetc/1.0",
        "/algorithms/.hidden/1.0",
        "/algorithms/name/..",
        "/algorithms/a%00b/1.0",
        "/algorithms/" + "x" * 300 + "/1.0",
    ):
        r = client.delete(path)
        assert r.status_code in (404, 405, 422), (path, r.text)  # 405: client folded ".."
        assert set(r.json()) == {"error_code", "message"}
    assert_error(
        client.post("/algorithms/activate", json={"name": "../x", "version": "1", "pids": ["a"]}),
        422,
        "1006",
    )
    assert_error(client.get("/algorithms", params={"name": "../../etc"}), 422, "1006")
    assert_error(client.get("/sessions/..%2F..%2Fx/logs"), 404, "1006")
    after = sorted(p.relative_to(server.store) for p in server.store.rglob("*"))
    audit = [p for p in after if p.name == "audit.jsonl"]
    assert [p for p in after if p not in before and p not in audit] == []


def test_a_bad_zip_is_400_and_the_upload_leaves_nothing(
    client: httpx.Client, server: RunnerServer
) -> None:
    tmp = server.store / "tmp"
    body = assert_error(
        client.post("/algorithms/install", files={"file": ("../../evil.zip", b"not a zip")}),
        400,
        "2001",
    )
    assert "zip" in body["message"]
    # a real zip without a manifest, sent as a raw application/zip body
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "hello")
    r = client.post(
        "/algorithms/install", content=buf.getvalue(), headers={"content-type": "application/zip"}
    )
    assert r.status_code == 400 and r.json()["error_code"] in ("2001", "2002"), r.text
    report = client.post("/algorithms/validate", files={"file": ("x.zip", buf.getvalue())})
    assert report.status_code == 200, report.text
    assert report.json()["summary"]["status"] == "FAIL"
    assert_error(client.post("/algorithms/install", files={"other": b"x"}), 422, "1006")
    assert_error(
        client.post("/algorithms/install", content=b"x", headers={"content-type": "text/plain"}),
        422,
        "1006",
    )
    assert list(tmp.iterdir()) == []
    assert not (server.store.parent / "evil.zip").exists()
    assert client.get("/algorithms").json() == []


def test_a_zip_of_an_unsupported_version_is_a_failed_check_not_a_500(
    client: httpx.Client, server: RunnerServer
) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("manifest.json", "{}")
        zf.writestr("requirements.txt", "")
    data = bytearray(buf.getvalue())
    at = data.find(b"PK\x01\x02")
    while at != -1:  # "version needed to extract" 7.1 in every central-directory entry
        data[at + 6 : at + 8] = (71).to_bytes(2, "little")
        at = data.find(b"PK\x01\x02", at + 4)
    report = client.post("/algorithms/validate", files={"file": ("v.zip", bytes(data))})
    assert report.status_code == 200, report.text
    assert report.json()["summary"]["status"] == "FAIL"
    assert report.json()["checks"][0]["error_code"] == "2001"
    assert_error(
        client.post("/algorithms/install", files={"file": ("v.zip", bytes(data))}), 400, "2001"
    )
    assert list((server.store / "tmp").iterdir()) == []


def test_request_size_limits_answer_413(client: httpx.Client, server: RunnerServer) -> None:
    big = bytes(70 * 1024)  # over the 64 KiB upload limit of this server
    assert_error(client.post("/algorithms/install", files={"file": ("p.zip", big)}), 413, "1006")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted while streaming
        for _ in range(10):
            yield bytes(10 * 1024)

    r = client.post(
        "/algorithms/install", content=chunks(), headers={"content-type": "application/zip"}
    )
    assert_error(r, 413, "1006")
    assert_error(client.post("/algorithms/activate", content=bytes(20 * 1024)), 413, "1006")
    assert list((server.store / "tmp").iterdir()) == []
    assert client.get("/healthz").status_code == 200


@pytest.fixture()
def token_server(tmp_path: Path) -> Iterator[RunnerServer]:
    with RunnerServer(tmp_path / "store", config={"service": {"token": TOKEN}}) as srv:
        yield srv


@pytest.mark.slow
def test_token_is_enforced_on_every_mutating_endpoint(token_server: RunnerServer) -> None:
    good = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=token_server.url, timeout=60.0) as c:
        calls = [
            ("POST", "/algorithms/install", {"files": {"file": b"x"}}),
            ("POST", "/algorithms/validate", {"files": {"file": b"x"}}),
            (
                "POST",
                "/algorithms/activate",
                {"json": {"name": "a", "version": "1", "pids": ["p"]}},
            ),
            ("POST", "/algorithms/switch", {"json": {"name": "a", "version": "1", "pids": ["p"]}}),
            ("POST", "/algorithms/rollback", {"json": {"pid": "p001"}}),
            ("DELETE", "/algorithms/a/1", {}),
            (
                "POST",
                "/inspect",
                {"data": {"pid": "p", "step_index": "1"}, "files": {"image": png_bytes()}},
            ),
            ("POST", "/sessions/s1/reset", {}),
            ("DELETE", "/sessions/s1", {}),
            ("GET", "/sessions/s1/logs", {}),
        ]
        for method, path, kwargs in calls:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                r = c.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]
                assert_error(r, 401, "9999")
                assert r.headers.get("www-authenticate") == "Bearer"
            r = c.request(method, path, headers=good, **kwargs)  # type: ignore[arg-type]
            assert r.status_code != 401, (method, path, r.text)
        # reads stay open
        for path in ("/healthz", "/readyz", "/algorithms", "/algorithms/active", "/metrics"):
            assert c.get(path).status_code == 200, path
        assert (
            c.post(
                "/inspect",
                headers=good,
                data={"pid": "p", "step_index": "1"},
                files={"image": png_bytes()},
            ).json()["pre_execute"]["error_code"]
            == "1001"
        )


@pytest.mark.slow
def test_env_token_and_bind_refusals(tmp_path: Path) -> None:
    # PROCVISION_TOKEN alone turns enforcement on, on loopback too
    with RunnerServer(tmp_path / "a", env={"PROCVISION_TOKEN": TOKEN}) as srv:
        assert_error(httpx.post(f"{srv.url}/algorithms/rollback", json={"pid": "p"}), 401, "9999")
        ok = httpx.post(
            f"{srv.url}/algorithms/rollback",
            json={"pid": "p"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert ok.status_code == 404, ok.text
    # a non-loopback bind without a token refuses to start, before touching anything
    cmd = [*RUNNER_CLI, "--store", str(tmp_path / "b"), "serve", "--host", "0.0.0.0"]
    proc = subprocess.run(
        [*cmd, "--port", str(free_port())], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "token" in proc.stderr and proc.stderr.startswith("error ")
    # require_token refuses on loopback too
    cfg = tmp_path / "require.json"
    cfg.write_text(json.dumps({"service": {"require_token": True}}), encoding="utf-8")
    proc = subprocess.run(
        [
            *RUNNER_CLI,
            "--store",
            str(tmp_path / "b"),
            "--config",
            str(cfg),
            "serve",
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "require_token" in proc.stderr
    assert not (tmp_path / "b").exists()


def test_queries_and_readiness_answer_while_a_cli_install_holds_the_lock(
    client: httpx.Client, server: RunnerServer
) -> None:
    holder = hold_store_lock(server.store)
    try:
        for _ in range(3):
            assert client.get("/algorithms").status_code == 200
            assert client.get("/algorithms/active").json() == {}
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["problems"] == [], ready.text
            assert_error(client.delete("/algorithms/absent/1.0"), 404, "1006")
    finally:
        holder.communicate("", timeout=10)


def test_a_name_or_pid_of_65_characters_is_refused_as_the_contract_says(
    client: httpx.Client,
) -> None:
    long = "a" * 65  # the one safe-name rule (contract.is_safe_name): at most 64 characters
    for response in (
        client.post("/algorithms/activate", json={"name": long, "version": "1", "pids": ["p"]}),
        client.post("/algorithms/activate", json={"name": "n", "version": long, "pids": ["p"]}),
        client.post("/algorithms/activate", json={"name": "n", "version": "1", "pids": [long]}),
        client.post("/algorithms/rollback", json={"pid": long}),
        client.delete(f"/algorithms/{long}/1.0"),
        client.get(f"/pids/{long}"),
    ):
        assert_error(response, 422, "1006")
    # 64 characters pass the rule and reach the store, which has no binding for that pid
    assert_error(client.post("/algorithms/rollback", json={"pid": "a" * 64}), 404, "1001")
