"""The whole package flow over real HTTP: real zips, real venvs, real workers, real server.

install -> activate -> inspect -> switch -> rollback -> uninstall, 16 concurrent inspections with
their own images and sessions, and metrics that move with the calls.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from helpers.package_zips import EXAMPLE, make_package_zip
from helpers.server import RunnerServer

if TYPE_CHECKING:
    from helpers.station import Stations

pytestmark = pytest.mark.slow

NAME = "algorithm-example"
IMAGES = EXAMPLE / "images"
TRUTH: dict[str, Any] = json.loads((IMAGES / "ground_truth.json").read_text(encoding="utf-8"))[
    "images"
]


@pytest.fixture(scope="module")
def zips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("zips")
    return {v: make_package_zip(out / f"example-{v}.zip", v) for v in ("1.0.0", "1.1.0")}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerServer]:
    root = tmp_path_factory.mktemp("flow")
    config = {
        "runner": {"workers_per_package": 2, "queue_timeout_ms": 120000},
        "service": {"max_upload_bytes": 256 * 1024 * 1024},
    }
    with RunnerServer(root / "store", config=config) as srv:
        yield srv


def inspect(
    client: httpx.Client, pid: str, step: int, image: str, session: str, **fields: str
) -> dict[str, Any]:
    path = IMAGES / image
    mime = "image/png" if image.endswith(".png") else "image/jpeg"
    r = client.post(
        "/inspect",
        data={"pid": pid, "step_index": str(step), "session_id": session, **fields},
        files={"image": (image, path.read_bytes(), mime)},
    )
    assert r.status_code == 200, r.text
    return r.json()


def verdict(out: dict[str, Any]) -> str:
    ex = out["execute"]
    assert out["pre_execute"]["status"] == "OK", out["pre_execute"]
    assert ex is not None and ex["status"] == "OK", ex
    return str(ex["data"]["result_status"])


def metric(text: str, series: str, /, **labels: str) -> float:
    """Sum of the samples of `series` whose labels include `labels` (0 when none)."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(series)}(?:\{{(.*)\}})? (\S+)$", line)
        if not m:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


@pytest.mark.timeout(900)
def test_install_activate_inspect_switch_rollback_uninstall(
    server: RunnerServer, zips: dict[str, Path]
) -> None:
    with httpx.Client(base_url=server.url, timeout=600.0) as c:
        # install: multipart for 1.0.0, a raw application/zip body for 1.1.0
        with open(zips["1.0.0"], "rb") as f:
            r = c.post("/algorithms/install", files={"file": ("x.zip", f, "application/zip")})
        assert r.status_code == 200, r.text
        assert (r.json()["name"], r.json()["version"]) == (NAME, "1.0.0")
        with open(zips["1.1.0"], "rb") as f:
            r = c.post(
                "/algorithms/install", content=f.read(), headers={"content-type": "application/zip"}
            )
        assert r.status_code == 200, r.text
        assert list((server.store / "tmp").iterdir()) == []
        with open(zips["1.0.0"], "rb") as f:  # the same version again is refused
            again = c.post("/algorithms/install", files={"file": ("x.zip", f)})
        assert again.status_code in (400, 409) and set(again.json()) == {"error_code", "message"}

        listed = c.get("/algorithms").json()
        assert [(e["name"], e["version"], e["state"]) for e in listed] == [
            (NAME, "1.0.0", "deployed"),
            (NAME, "1.1.0", "deployed"),
        ]
        assert [e["version"] for e in c.get("/algorithms", params={"name": NAME}).json()] == [
            "1.0.0",
            "1.1.0",
        ]
        assert c.get("/algorithms", params={"state": "running"}).json() == []

        # activate 1.0.0 for both pids; the service is ready with warm workers
        both = ["p001", "p002"]
        r = c.post("/algorithms/activate", json={"name": NAME, "version": "1.0.0", "pids": both})
        assert r.status_code == 200, r.text
        ready = server.wait_ready(60)
        assert {p["state"] for p in ready["packages"]} == {"READY"}
        active = c.get("/algorithms/active").json()
        assert {pid: (m["name"], m["version"]) for pid, m in active.items()} == {
            "p001": (NAME, "1.0.0"),
            "p002": (NAME, "1.0.0"),
        }
        # binding a bound pid elsewhere is a conflict; a pid the package lacks is bad input
        conflict = c.post(
            "/algorithms/activate", json={"name": NAME, "version": "1.1.0", "pids": ["p001"]}
        )
        assert conflict.status_code == 409 and conflict.json()["error_code"] == "2006"
        foreign = c.post(
            "/algorithms/activate", json={"name": NAME, "version": "1.1.0", "pids": ["p999"]}
        )
        assert foreign.status_code == 422 and foreign.json()["error_code"] == "1001"

        # inspect: both steps of one session, verdicts as in the ground truth
        before = c.get("/metrics").text
        for image in ("ok_01.png", "ng_missing_1.png", "ok_04.jpg"):
            session = f"board-{image}"
            step1 = inspect(c, "p001", 1, image, session)
            assert step1["pre_execute"]["package"] == {"name": NAME, "version": "1.0.0"}
            assert verdict(step1) == TRUTH[image]["step1"]
            step2 = inspect(c, "p001", 2, image, session, user_params=json.dumps({"mode": "fast"}))
            assert verdict(step2) == TRUTH[image]["step2"]
        # one phase at a time, and params out of range are the Runner's 1006 result
        pre = inspect(c, "p002", 1, "ok_02.png", "phases", phase="pre")
        assert pre["status"] == "OK" and pre["package"]["version"] == "1.0.0"
        ex = inspect(c, "p002", 1, "ok_02.png", "phases", phase="execute")
        assert ex["data"]["result_status"] == TRUTH["ok_02.png"]["step1"]
        bad = inspect(c, "p002", 1, "ok_02.png", "bad", user_params='{"exposure": 99}')
        assert bad["pre_execute"]["error_code"] == "1006" and bad["execute"] is None

        after = c.get("/metrics").text
        ok_exec = {"pid": "p001", "name": NAME, "version": "1.0.0", "phase": "execute"}
        assert (
            metric(after, "procvision_calls_total", status="OK", **ok_exec)
            - metric(before, "procvision_calls_total", status="OK", **ok_exec)
            == 6
        )
        for hist in ("queue", "transfer", "algorithm", "total"):
            name = f"procvision_call_{hist}_seconds_count"
            assert metric(after, name, **ok_exec) - metric(before, name, **ok_exec) == 6, hist
        rejected = {"pid": "p002", "phase": "pre", "error_code": "1006", "status": "ERROR"}
        assert metric(after, "procvision_calls_total", **rejected) == 1 + metric(
            before, "procvision_calls_total", **rejected
        )
        workers = metric(after, "procvision_workers", name=NAME, version="1.0.0")
        assert workers == 2
        # leased slot bytes: zero between calls, but always exported
        assert re.search(r"^procvision_shared_memory_bytes \S+$", after, re.M)

        # session endpoints
        logs = c.get("/sessions/board-ok_01.png/logs")
        assert logs.status_code == 200 and isinstance(logs.json(), list)
        assert c.post("/sessions/board-ok_01.png/reset").json()["status"] == "reset"
        assert c.delete("/sessions/board-ok_01.png").json()["status"] == "closed"
        assert c.get("/sessions/board-ok_01.png/logs").status_code == 404

        # switch both pids to 1.1.0: answers now come from the new version
        r = c.post("/algorithms/switch", json={"name": NAME, "version": "1.1.0", "pids": both})
        assert r.status_code == 200, r.text
        out = inspect(c, "p001", 1, "ok_03.png", "after-switch")
        assert out["pre_execute"]["package"]["version"] == "1.1.0"
        assert verdict(out) == TRUTH["ok_03.png"]["step1"]
        server.wait_ready(60)

        # rollback p001 to 1.0.0; p002 stays on 1.1.0
        r = c.post("/algorithms/rollback", json={"pid": "p001"})
        assert r.status_code == 200, r.text
        assert r.json()["rolled_back_from"]["version"] == "1.1.0"
        assert inspect(c, "p001", 1, "ok_01.png", "rb")["pre_execute"]["package"]["version"] == (
            "1.0.0"
        )
        assert inspect(c, "p002", 1, "ok_01.png", "rb2")["pre_execute"]["package"]["version"] == (
            "1.1.0"
        )

        # uninstall: refused while bound, then forced
        refused = c.delete(f"/algorithms/{NAME}/1.0.0")
        assert refused.status_code == 409 and refused.json()["error_code"] == "2007"
        forced = c.delete(f"/algorithms/{NAME}/1.0.0", params={"force": "true"})
        assert forced.status_code == 200, forced.text
        assert forced.json()["deactivated"] == ["p001"]
        assert [e["version"] for e in c.get("/algorithms").json()] == ["1.1.0"]
        gone = inspect(c, "p001", 1, "ok_01.png", "gone")
        assert gone["pre_execute"]["error_code"] == "1001"
        assert set(c.get("/algorithms/active").json()) == {"p002"}
        assert not (server.store / "deployed" / NAME / "1.0.0").exists()
        server.wait_ready(60)

        # 16 concurrent inspections, each its own image and session, both steps in order
        jobs = [(i, sorted(TRUTH)[i % len(TRUTH)]) for i in range(16)]

        def run(job: tuple[int, str]) -> tuple[str, str, str, str, str]:
            i, image = job
            session = f"concurrent-{i}"
            with httpx.Client(base_url=server.url, timeout=300.0) as own:
                s1 = inspect(own, "p002", 1, image, session)
                s2 = inspect(own, "p002", 2, image, session)
            return (
                image,
                verdict(s1),
                verdict(s2),
                s1["pre_execute"]["package"]["version"],
                s2["execute"]["package"]["version"],
            )

        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(run, jobs))
        assert len(results) == 16
        for image, v1, v2, ver1, ver2 in results:
            assert (v1, v2) == (TRUTH[image]["step1"], TRUTH[image]["step2"]), image
            assert ver1 == ver2 == "1.1.0"
        assert c.get("/healthz").status_code == 200


@pytest.mark.timeout(600)
def test_readiness_follows_the_active_packages_across_restarts(
    tmp_path: Path, stations: Stations
) -> None:
    # A store where an earlier process installed 1.0.0 and activated it (p001, p002): a copy of
    # the run's template. Installing and activating over HTTP is the flow test's part; this
    # test is about what a restarted server makes of the store.
    store = stations.copy("1.0.0", tmp_path / "store")
    # a restart warms every active version before /readyz says ready
    with RunnerServer(store) as srv, httpx.Client(base_url=srv.url, timeout=600.0) as c:
        ready = srv.wait_ready(120)
        assert ready["active"]["p001"]["version"] == "1.0.0"
        assert [(p["name"], p["version"], p["state"]) for p in ready["packages"]] == [
            (NAME, "1.0.0", "READY")
        ]
        assert verdict(inspect(c, "p001", 1, "ok_01.png", "after-restart")) == "OK"
    # an active version that cannot start keeps /readyz at 503 with the reason; /healthz is fine
    python = store / "deployed" / NAME / "1.0.0" / "venv" / "bin" / "python"
    python.unlink()
    with RunnerServer(store) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        deadline = time.monotonic() + 120
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            r = c.get("/readyz")
            assert r.status_code == 503, r.text
            body = r.json()
            if body["started"]:
                break
            time.sleep(0.05)
        assert body["started"] and not body["ready"]
        assert any("p001" in problem for problem in body["problems"]), body
        assert c.get("/healthz").status_code == 200
