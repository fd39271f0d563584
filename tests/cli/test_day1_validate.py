"""Issue 16 items 2 and 3: one rule for numpy values in results, and deadlines on every call.

Item 2 (decided: warn and convert, as the adapter and the station always did): quick `validate`
gives a WARN and passes, `validate --full` and `run` pass, and the worker logs the warning.
Item 3: an execute that never returns makes `validate --timeout` and `run --timeout` answer 1005.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from algos.cli.broken import _ng, write_project
from PIL import Image

CLI = Path(sys.executable).with_name("procvision-cli")
NUMPY_RECT = _ng(rects="[dict(rect, x=np.int64(1), score=np.float32(0.5))]")
SLEEPS = 'time.sleep(600) or {"status": "OK", "data": {"result_status": "OK"}}'


def _cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _image(path: Path) -> Path:
    Image.fromarray(np.full((240, 320, 3), 120, np.uint8)).save(path)
    return path


def test_numpy_values_warn_and_convert_in_quick_validate(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", execute=NUMPY_RECT)
    result = _cli("validate", str(project), "--json")
    assert result.returncode == 0, result.stdout
    report = json.loads(result.stdout)
    assert report["summary"]["status"] == "PASS"
    warns = [c for c in report["checks"] if c["result"] == "WARN"]
    assert [c["name"] for c in warns] == ["step 1 execute"], report
    assert "numpy" in warns[0]["message"] and warns[0]["code"] == "1008"


@pytest.mark.slow
def test_numpy_values_pass_full_validate_and_run_with_a_logged_warning(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", execute=NUMPY_RECT)
    full = _cli("validate", str(project), "--full", "--json")
    assert full.returncode == 0, full.stdout
    run = _cli("run", str(project), "--pid", "p1", "--image", str(_image(tmp_path / "i.png")))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "verdict: NG" in run.stdout


@pytest.mark.slow
def test_quick_validate_reports_1005_for_an_execute_that_never_returns(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", prelude="import time", execute=SLEEPS)
    result = _cli("validate", str(project), "--timeout", "2", "--json")
    assert result.returncode == 1, result.stdout
    report = json.loads(result.stdout)
    failed = [c for c in report["checks"] if c["result"] == "FAIL"]
    assert [(c["name"], c["code"]) for c in failed] == [("step 1 execute", "1005")], report
    assert "2 s" in failed[0]["message"]
    # what ran before the stuck call is still reported
    assert any(
        c["name"] == "step 1 pre_execute" and c["result"] == "PASS" for c in report["checks"]
    )


@pytest.mark.slow
def test_run_reports_1005_past_its_timeout(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", prelude="import time", execute=SLEEPS)
    image = _image(tmp_path / "i.png")
    result = _cli("run", str(project), "--pid", "p1", "--image", str(image), "--timeout", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "(1005)" in result.stdout, result.stdout
    bad = _cli("run", str(project), "--pid", "p1", "--image", str(image), "--timeout", "0")
    assert bad.returncode != 0 and "1006" in bad.stderr + bad.stdout
