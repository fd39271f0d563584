"""Prometheus metrics: calls and requests counted, labels bounded, states as plain strings.

The HTTP half runs against a real `procvision-runner serve` subprocess; the state labels are
read from a real Runner's stats() through ServiceMetrics.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest
from helpers.runner_kit import FAULTY, FRAME, ok, runner_config
from helpers.server import RunnerServer
from PIL import Image

from procvision_runner import Runner
from procvision_runner.metrics import ServiceMetrics


def png_bytes(width: int = 64, height: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 60)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerServer]:
    with RunnerServer(tmp_path_factory.mktemp("metrics") / "store") as srv:
        yield srv
    assert srv.proc is None


# one client for the module: a new httpx client loads the CA bundle (~60 ms CPU)
@pytest.fixture(scope="module")
def client(server: RunnerServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60.0) as c:
        yield c


def _sample(text: str, name: str, labels: dict[str, str]) -> float:
    """The value of one Prometheus sample (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            series, _, value = line.rpartition(" ")
            got = series[len(name) :].strip("{}")
            if ",".join(sorted(got.split(","))) == want or (not labels and not got):
                return float(value)
    return 0.0


@pytest.mark.slow
def test_metrics_count_calls_and_requests(client: httpx.Client) -> None:
    labels = {
        "pid": "",  # an unrouted pid is not a label value: any client could invent new ones
        "name": "",
        "version": "",
        "phase": "pre",
        "status": "ERROR",
        "error_code": "1001",
    }
    before = client.get("/metrics")
    assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
    for _ in range(3):
        client.post(
            "/inspect",
            data={"pid": "metric-pid", "step_index": "1", "phase": "pre"},
            files={"image": png_bytes()},
        )
    after = client.get("/metrics").text
    assert (
        _sample(after, "procvision_calls_total", labels)
        == _sample(before.text, "procvision_calls_total", labels) + 3
    )
    requests = {"route": "/inspect", "method": "POST", "status": "200"}
    assert _sample(after, "procvision_http_requests_total", requests) >= 3
    for name in (
        "procvision_worker_restarts_total",
        "procvision_call_timeouts_total",
        "procvision_crash_loops_total",
        "procvision_breaker_trials_total",
        "procvision_memory_recycles_total",
        "procvision_memory_kills_total",
        "procvision_shared_memory_bytes",
    ):
        assert f"\n{name} " in after, name


def _series(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{")]


def test_metric_labels_stay_bounded_whatever_clients_and_algorithms_send(
    client: httpx.Client,
) -> None:
    for i in range(5):
        r = client.post(
            "/inspect",
            data={"pid": f"invented-{i}", "step_index": "1", "phase": "pre"},
            files={"image": png_bytes(8, 8)},
        )
        assert r.status_code == 200 and r.json()["error_code"] == "1001", r.text
        r = client.post(
            "/inspect",
            data={"pid": f"invented-img-{i}", "step_index": "1"},
            files={"image": b"not an image"},
        )
        assert r.status_code == 200 and r.json()["pre_execute"]["error_code"] == "1002"
    for method in ("PROPFIND", "MKCOL", "LOCK"):
        assert client.request(method, "/healthz").status_code == 405
    text = client.get("/metrics").text
    assert "invented" not in text
    series = _series(text, "procvision_calls_total")
    assert {line.split('pid="', 1)[1].split('"', 1)[0] for line in series} == {""}
    methods = {
        line.split('method="', 1)[1].split('"', 1)[0]
        for line in _series(text, "procvision_http_requests_total")
    }
    assert "other" in methods and methods <= {"GET", "POST", "DELETE", "other"}


def test_algorithm_error_codes_outside_the_contract_are_one_label() -> None:
    metrics = ServiceMetrics()
    for i in range(20):
        metrics.observe(
            {
                "pid": "p001",
                "name": "algo",
                "version": "1.0.0",
                "phase": "execute",
                "status": "ERROR",
                "error_code": f"ALGO-{i}",
                "total_ms": 1.0,
            }
        )
    metrics.observe(
        {
            "pid": "p001",
            "name": "algo",
            "version": "1.0.0",
            "phase": "execute",
            "status": "ERROR",
            "error_code": "1002",
        }
    )
    metrics.observe(
        {
            "pid": "p002",
            "name": None,
            "version": None,
            "phase": "pre",
            "status": "ERROR",
            "error_code": "1001",
        }
    )
    text = metrics.render().decode()
    series = _series(text, "procvision_calls_total")
    codes = sorted(line.split('error_code="', 1)[1].split('"', 1)[0] for line in series)
    assert codes == ["1001", "1002", "other"]
    base = {"name": "algo", "version": "1.0.0", "phase": "execute", "status": "ERROR"}
    assert (
        _sample(text, "procvision_calls_total", {**base, "pid": "p001", "error_code": "other"})
        == 20
    )
    assert "p002" not in text  # no package routed: not a label value


def test_package_and_worker_states_are_the_plain_strings() -> None:
    with Runner(runner_config()) as runner:
        runner.load(FAULTY)
        ok(runner.run_step("f1", 1, FRAME)["execute"])
        metrics = ServiceMetrics(runner)
        text = metrics.render().decode()
        stats = runner.stats()
    labels = {"name": "faulty", "version": "1.0.0", "state": "READY"}
    assert _sample(text, "procvision_package_state", labels) == 1
    assert _sample(text, "procvision_workers", labels) == len(stats["workers"]) >= 1
    assert "PoolState" not in text and "WorkerState" not in text
    assert {type(w["state"]) for w in stats["workers"]} == {str}
    assert {type(p["state"]) for p in stats["packages"]} == {str}
