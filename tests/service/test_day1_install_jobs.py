"""Issue 16 item 10: `POST /algorithms/install?async=true` is a job that `GET /jobs/{id}` follows.

A real `procvision-runner serve`, real package zips, the store lock held by another process where
a job must wait; the responses are checked against the service's OpenAPI 3.1 and 3.0 documents.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.package_zips import make_package_zip
from helpers.server import RunnerServer
from helpers.store import hold_store_lock

TOKEN = "job-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PHASES = ["queued", "check", "unpack", "venv", "smoke", "register", "done"]


def start_job(http: httpx.Client, zip_path: Path) -> httpx.Response:
    with open(zip_path, "rb") as f:
        return http.post(
            "/algorithms/install",
            params={"async": "true"},
            files={"file": ("pkg.zip", f, "application/zip")},
            headers=AUTH,
        )


def wait_job(http: httpx.Client, location: str, timeout_s: float = 400.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = http.get(location, headers=AUTH)
        assert r.status_code == 200, r.text
        if r.json()["status"] in ("succeeded", "failed"):
            return dict(r.json())
        time.sleep(0.05)
    raise AssertionError(f"job {location} did not end in {timeout_s} s")


def uploads(store: Path) -> list[str]:
    return sorted(p.name for p in (store / "tmp").glob("upload-*"))


def check_schema(doc: dict, path: str, method: str, status: int, body: object) -> None:
    """`body` is valid against what `doc` (OpenAPI 3.1 or 3.0) documents for that response."""
    from jsonschema import Draft202012Validator
    from openapi_schema_validator import OAS30Validator

    response = doc["paths"][path][method]["responses"][str(status)]
    schema = response["content"]["application/json"]["schema"]
    make = Draft202012Validator if doc["openapi"].startswith("3.1") else OAS30Validator
    errors = list(make({**schema, "components": doc["components"]}).iter_errors(body))
    assert not errors, (doc["openapi"], path, status, body, errors[0])


def openapi_docs(http: httpx.Client) -> list[dict]:
    from openapi_spec_validator import validate

    docs = [http.get("/openapi.json").json(), http.get("/openapi-3.0.json").json()]
    for doc in docs:
        validate(doc)
    return docs


@pytest.mark.slow
def test_an_async_install_is_a_job_with_its_phases_log_and_entry(tmp_path: Path) -> None:
    good = make_package_zip(tmp_path / "good.zip")
    bad = make_package_zip(tmp_path / "bad.zip", version="1.0.1", omit=["manifest.json"])
    config = {"service": {"token": TOKEN}}
    with (
        RunnerServer(tmp_path / "store", config=config) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        docs = openapi_docs(http)
        accepted = start_job(http, good)
        assert accepted.status_code == 202, accepted.text
        body = accepted.json()
        assert accepted.headers["location"] == body["location"] == f"/jobs/{body['job_id']}"
        assert body["kind"] == "install" and body["status"] in ("queued", "running")
        assert http.get(body["location"]).status_code == 401  # the install's token is needed
        job = wait_job(http, body["location"])
        assert job["status"] == "succeeded", job
        phases = [line["phase"] for line in job["log"]]
        assert sorted(set(phases), key=phases.index) == PHASES, job["log"]
        assert [line["seq"] for line in job["log"]] == list(range(1, len(job["log"]) + 1))
        assert job["error"] is None and job["phase"] == "done"
        assert (job["result"]["name"], job["result"]["version"]) == ("algorithm-example", "1.0.0")
        listed = http.get("/algorithms").json()
        assert [(e["name"], e["version"]) for e in listed] == [("algorithm-example", "1.0.0")]

        failed = wait_job(http, start_job(http, bad).json()["location"])
        assert failed["status"] == "failed" and failed["result"] is None, failed
        assert failed["error"]["error_code"] == "2002", failed
        assert failed["log"][-1]["message"].startswith("error 2002: ")

        unknown = http.get("/jobs/job_nosuchjob", headers=AUTH)
        assert unknown.status_code == 404 and unknown.json()["error_code"] == "1006"
        assert http.get("/jobs/..%2Fetc", headers=AUTH).status_code in (404, 422)
        for doc in docs:
            check_schema(doc, "/algorithms/install", "post", 202, body)
            check_schema(doc, "/jobs/{job_id}", "get", 200, job)
            check_schema(doc, "/jobs/{job_id}", "get", 200, failed)
            check_schema(doc, "/jobs/{job_id}", "get", 404, unknown.json())
        assert uploads(server.store) == []
        # the synchronous form is still the default
        sync = http.post(
            "/algorithms/install",
            params={"replace": "true"},
            files={"file": ("pkg.zip", good.read_bytes(), "application/zip")},
            headers=AUTH,
        )
        assert sync.status_code == 200 and sync.json()["version"] == "1.0.0", sync.text


@pytest.mark.slow
def test_jobs_are_bounded_wait_for_the_store_lock_and_end_with_the_server(
    tmp_path: Path,
) -> None:
    zip_path = make_package_zip(tmp_path / "pkg.zip")
    config = {
        "service": {"jobs_max_active": 3, "jobs_shutdown_wait_s": 60},
        "store": {"lock_timeout_s": 10.0},
    }
    server = RunnerServer(tmp_path / "store", config=config).start()
    holder = None
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            holder = hold_store_lock(server.store)  # a CLI change in progress elsewhere
            jobs = [start_job(http, zip_path) for _ in range(3)]
            assert [r.status_code for r in jobs] == [202] * 3, [r.text for r in jobs]
            refused = start_job(http, zip_path)
            assert refused.status_code == 503, refused.text
            assert refused.json()["error_code"] == "1005"
            assert int(refused.headers["retry-after"]) > 0
            view = http.get(jobs[2].json()["location"]).json()
            assert view["status"] == "queued" and view["finished_at"] is None, view
        # Stopping now: the first job waits for the store lock (like every change, within the
        # store's lock_timeout_s) and is waited for; the two behind it never begin.
        assert server.stop() == 0
    finally:
        server.stop()
        if holder is not None:
            holder.communicate("", timeout=10)
    assert uploads(server.store) == []  # every job's upload went with it
    ended = [
        json.loads(line)
        for line in server.log().splitlines()
        if '"procvision_runner.service.jobs"' in line
    ]
    ids = [r.json()["job_id"] for r in jobs]
    codes = {r["job_id"]: (r["status"], r["error_code"]) for r in ended}
    assert codes == {i: ("failed", "9999") for i in ids}, ended
    first = next(r for r in ended if r["job_id"] == ids[0])
    assert "the store is busy: lock" in first["message"], first
    cancelled = [r for r in ended if "the service stopped before the install began" in r["message"]]
    assert {r["job_id"] for r in cancelled} == set(ids[1:]), ended
