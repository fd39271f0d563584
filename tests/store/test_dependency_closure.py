"""Issue 16 item 1: a wheels/ missing a TRANSITIVE dependency is refused by every zip check.

`pv-needs-dep` is a real wheel whose metadata requires `pv-missing-dep`, which no wheel provides:
the requirements.txt lines all have wheels, so only a resolver over the whole closure sees it.
The same check answers in `validate --zip`, `package -s` and `POST /algorithms/validate`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from helpers.package_zips import (
    dependency_wheels,
    make_package_zip,
    requirements_for,
    sdk_wheel,
    tiny_wheel,
)
from helpers.server import RunnerServer

CLI = Path(sys.executable).with_name("procvision-cli")


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _assert_names_both(text: str) -> None:
    assert "pv-missing-dep" in text and "pv-needs-dep" in text, text


@pytest.fixture
def broken_zip(tmp_path: Path) -> Path:
    needs = tiny_wheel(tmp_path / "extra", "pv-needs-dep", "1.0", ["pv-missing-dep>=2"])
    wheels = [*dependency_wheels(), sdk_wheel(), needs]
    return make_package_zip(tmp_path / "broken.zip", wheels=wheels)


@pytest.mark.slow
def test_validate_zip_names_the_missing_transitive_dependency(broken_zip: Path) -> None:
    result = _cli("validate", "--zip", str(broken_zip), "--json")
    assert result.returncode == 1, result.stdout
    report = json.loads(result.stdout)
    failed = [c for c in report["checks"] if c["result"] == "FAIL"]
    assert [c["name"] for c in failed] == ["dependency closure"], failed
    assert failed[0]["code"] == "2004"
    _assert_names_both(failed[0]["message"])


@pytest.mark.slow
def test_http_validate_names_the_missing_transitive_dependency(
    broken_zip: Path, tmp_path: Path
) -> None:
    with RunnerServer(tmp_path / "store") as server, broken_zip.open("rb") as f:
        r = httpx.post(
            f"{server.url}/algorithms/validate",
            files={"file": ("broken.zip", f)},
            timeout=300,
        )
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["summary"]["status"] == "FAIL"
    codes = [c.get("error_code") for c in report["checks"] if c["result"] == "FAIL"]
    assert codes == ["2004"], report
    _assert_names_both(json.dumps(report))


@pytest.mark.slow
def test_a_complete_closure_passes_the_resolver(tmp_path: Path) -> None:
    needs = tiny_wheel(tmp_path / "extra", "pv-needs-dep", "1.0", ["pv-missing-dep>=2"])
    dep = tiny_wheel(tmp_path / "extra", "pv-missing-dep", "2.1")
    wheels = [*dependency_wheels(), sdk_wheel(), needs, dep]
    ok = make_package_zip(
        tmp_path / "ok.zip",
        wheels=wheels,
        requirements=requirements_for([w for w in wheels if w != dep]),
    )
    result = _cli("validate", "--zip", str(ok), "--json")
    assert result.returncode == 0, result.stdout
    names = [c["name"] for c in json.loads(result.stdout)["checks"]]
    assert "dependency closure" in names


@pytest.mark.slow
def test_package_skip_download_runs_the_resolver(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    made = _cli("init", "closure demo", "-d", str(project))
    assert made.returncode == 0, made.stderr
    (project / "wheels").mkdir(exist_ok=True)
    for wheel in dependency_wheels():
        shutil.copyfile(wheel, project / "wheels" / wheel.name)
    tiny_wheel(project / "wheels", "pv-needs-dep", "1.0", ["pv-missing-dep>=2"])
    (project / "requirements.txt").write_text("numpy>=1.23\npv-needs-dep==1.0\n", encoding="utf-8")
    out = tmp_path / "p.zip"
    result = _cli("package", str(project), "-s", "-o", str(out), "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    error = json.loads(result.stdout)
    assert error["error_code"] == "2004"
    _assert_names_both(error["message"])
    assert not out.exists()
