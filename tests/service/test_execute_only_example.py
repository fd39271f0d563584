"""The execute-only example package end to end, checked against its ground truth.

validate (quick and --full), run (CLI and the original Python API), package, then the station:
install, activate, inspect over HTTP (with the guide image), and `procvision-runner inspect`.
Real subprocesses, real venvs from real wheels, real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.server import RunnerServer

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "execute-only-example"
IMAGES = EXAMPLE / "images"
TRUTH = json.loads((IMAGES / "ground_truth.json").read_text(encoding="utf-8"))
GUIDE = IMAGES / TRUTH["guide_image"]
GUIDE_INFO = IMAGES / TRUTH["guide_info"]
BIN = Path(sys.executable).parent
PID = "line-7"


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "procvision-cli"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def runner_cli(store: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "procvision-runner"), "--store", str(store), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def labels(result: dict[str, Any]) -> list[str]:
    return sorted(r["label"] for r in (result.get("data") or {}).get("defect_rects") or [])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("exonly") / "part-presence"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture(scope="module")
def package_zip(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers.package_zips import dependency_wheels

    (project / "wheels").mkdir(exist_ok=True)
    for wheel in dependency_wheels():
        shutil.copyfile(wheel, project / "wheels" / wheel.name)
    out = tmp_path_factory.mktemp("dist") / "part-presence.zip"
    made = cli("package", str(project), "-s", "-o", str(out), "--json", timeout=900)
    assert made.returncode == 0, made.stdout + made.stderr
    return out


def test_validate_quick_and_full(project: Path) -> None:
    for extra in ([], ["--full"]):
        result = cli("validate", str(project), *extra, "--json")
        report = json.loads(result.stdout)
        assert result.returncode == 0, report
        assert report["summary"]["status"] == "PASS"
    names = [c["name"] for c in report["checks"]]
    assert "execute (host frame, strict stdio)" in names


def test_run_cli_with_the_original_options(project: Path) -> None:
    for name in ("cur_ok_01.png", "cur_ng_1_4.png"):
        truth = TRUTH["samples"][name]
        result = cli(
            "run",
            str(project),
            "--image" if name.startswith("cur_ok") else "--cur-image",
            str(IMAGES / name),
            "--guide-image",
            str(GUIDE),
            "--step",
            "1",
            "--step-desc",
            TRUTH["step_desc"],
            "--guide-info",
            f"@{GUIDE_INFO}",
            "--json",
        )
        assert result.returncode == 0, result.stdout + result.stderr
        (step,) = json.loads(result.stdout)["steps"]
        assert step["step_index"] == 1 and step["image"] == str(IMAGES / name)
        answer = step["execute"]
        assert answer["data"]["result_status"] == truth["result_status"]
        assert labels(answer) == truth["missing"]
    missing_guide = cli("run", str(project), "--image", str(IMAGES / "cur_ok_01.png"))
    assert missing_guide.returncode != 0 and "1006" in missing_guide.stderr


def test_original_python_api(project: Path) -> None:
    from procvision_algorithm_sdk.cli import run

    info = json.loads(GUIDE_INFO.read_text(encoding="utf-8"))
    for name, truth in sorted(TRUTH["samples"].items()):
        answer = run(str(project), str(IMAGES / name), str(GUIDE), 1, TRUTH["step_desc"], info)
        assert answer["execute"]["data"]["result_status"] == truth["result_status"], name
        assert labels(answer["execute"]) == truth["missing"], name


def test_package_validates(package_zip: Path) -> None:
    checked = cli("validate", "--zip", str(package_zip), "--json")
    assert checked.returncode == 0, checked.stdout


@pytest.fixture(scope="module")
def server(package_zip: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerServer]:
    root = tmp_path_factory.mktemp("station")
    with RunnerServer(root / "store", config={"runner": {"workers_per_package": 1}}) as srv:
        with httpx.Client(base_url=srv.url, timeout=600) as client:
            with package_zip.open("rb") as f:
                r = client.post("/algorithms/install", files={"file": ("p.zip", f)})
            assert r.status_code == 200, r.text
            assert r.json()["api"] == "execute-only" and r.json()["supported_pids"] == []
            r = client.post(
                "/algorithms/activate",
                json={"name": "part-presence", "version": "1.0.0", "pids": [PID]},
            )
            assert r.status_code == 200, r.text
        yield srv


@pytest.fixture
def served(server: RunnerServer) -> RunnerServer:
    """The module's server, started again if a test stopped it (the CLI test does), and ready.

    A restarted server warms the active package first: until then the package's info (from
    its worker) is not known yet.
    """
    if server.proc is None:
        server.start()
        server.wait_ready(120)
    return server


def test_inspect_over_http(served: RunnerServer) -> None:
    server = served
    with httpx.Client(base_url=server.url, timeout=120) as client:
        listed = client.get("/algorithms").json()
        mine = [p for p in listed if p["name"] == "part-presence"]
        assert mine and mine[0]["api"] == "execute-only" and mine[0]["active_pids"] == [PID]
        described = client.get("/algorithms/part-presence/1.0.0").json()
        assert described["api_generation"] == "execute-only"
        assert described["info"]["api"] == "execute-only"
        guide = GUIDE.read_bytes()
        for name, truth in sorted(TRUTH["samples"].items()):
            mime = "image/png" if name.endswith(".png") else "image/jpeg"
            r = client.post(
                "/inspect",
                data={
                    "pid": PID,
                    "step_index": "1",
                    "step_desc": TRUTH["step_desc"],
                    "guide_info": GUIDE_INFO.read_text(encoding="utf-8"),
                },
                files={
                    "image": (name, (IMAGES / name).read_bytes(), mime),
                    "guide_image": ("guide.png", guide, "image/png"),
                },
            )
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["pre_execute"] is None
            assert body["execute"]["data"]["result_status"] == truth["result_status"], name
            assert labels(body["execute"]) == truth["missing"], name
        # the guide image is required; guide_info is checked against it
        r = client.post(
            "/inspect",
            data={"pid": PID, "step_index": "1"},
            files={"image": ("a.png", guide, "image/png")},
        )
        assert r.json()["execute"]["error_code"] == "1006"
        bad = '[{"label": "1", "posList": [{"x": 600, "y": 0, "width": 100, "height": 5}]}]'
        r = client.post(
            "/inspect",
            data={"pid": PID, "step_index": "1", "guide_info": bad},
            files={
                "image": ("a.png", guide, "image/png"),
                "guide_image": ("g.png", guide, "image/png"),
            },
        )
        result = r.json()["execute"]
        assert result["error_code"] == "1007" and "guide_info[0].posList[0]" in result["message"]
        r = client.post(
            "/inspect",
            data={"pid": PID, "step_index": "1", "guide_info": "{}"},
            files={"image": ("a.png", guide, "image/png")},
        )
        assert r.status_code == 422 and r.json()["error_code"] == "1006"
        doc = client.get("/openapi.json").json()
        text = json.dumps(doc)
        assert "guide_info" in text and "Execute-only API only" in text


def test_runner_cli_inspect(server: RunnerServer) -> None:
    server.stop()  # the store has one owner at a time; `served` starts it again when needed
    result = runner_cli(
        server.store,
        "inspect",
        "--pid",
        PID,
        "--step",
        "1",
        "--image",
        str(IMAGES / "cur_ng_2.png"),
        "--guide-image",
        str(GUIDE),
        "--step-desc",
        TRUTH["step_desc"],
        "--guide-info",
        f"@{GUIDE_INFO}",
        "--json",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    answer = json.loads(result.stdout.splitlines()[-1])
    assert answer["execute"]["data"]["result_status"] == "NG"
    assert labels(answer["execute"]) == TRUTH["samples"]["cur_ng_2.png"]["missing"]
