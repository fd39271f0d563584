"""Step index 0, the original `init`'s numbering: accepted with a warning and run (item 6)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.original_sdk import run_with_original_sdk
from PIL import Image

from procvision_algorithm_sdk import cli as seed_cli
from procvision_algorithm_sdk.contract import check_info, check_manifest, legacy_step_zero
from procvision_runner import Runner, RunnerConfig

CLI = Path(sys.executable).parent / "procvision-cli"


def _original_project(tmp_path: Path) -> Path:
    """A project made by the ORIGINAL 0.0.7 `init_project` (its manifest numbers step 0)."""
    target = tmp_path / "board_check"
    code = (
        "from procvision_algorithm_sdk.cli import init_project\n"
        f"print(init_project('board-check', {str(target)!r}, 'p001', '1.0.0', 'legacy'))\n"
    )
    proc = run_with_original_sdk("0.0.7", tmp_path / "original", code)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
    assert [step["index"] for step in manifest["steps"]] == [0]
    return target


def test_contract_accepts_index_0_and_names_it() -> None:
    manifest = {
        "name": "a",
        "version": "1",
        "entry_point": "m:C",
        "supported_pids": ["p001"],
        "steps": [{"index": 0, "name": "s", "params": []}],
    }
    assert check_manifest(manifest) == []
    info = {k: manifest[k] for k in ("name", "version", "supported_pids", "steps")}
    assert check_info(info) == []
    (warning,) = legacy_step_zero(manifest, "manifest")
    assert warning.where == "manifest.steps[0].index" and "legacy" in warning.message
    manifest["steps"][0]["index"] = -1
    assert check_manifest(manifest)[0].where == "manifest.steps[0].index"


@pytest.mark.slow
def test_original_init_project_validates_with_a_warning_and_runs(tmp_path: Path) -> None:
    project = _original_project(tmp_path)
    report = seed_cli.validate(str(project))
    assert report["summary"]["status"] == "PASS", report
    assert report["summary"]["warnings"] == 1
    (warn,) = [check for check in report["checks"] if check["result"] == "WARN"]
    assert warn["where"] == "manifest.steps[0].index" and "legacy" in warn["message"]
    image = tmp_path / "frame.png"
    Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(image)
    # The seed API and the console script, step 0 both.
    result = seed_cli.run(str(project), "p001", str(image), '{"threshold": 0.7}', 0)
    assert result["execute"]["status"] == "OK", result
    assert result["execute"]["data"]["step_index"] == 0
    proc = subprocess.run(
        [str(CLI), "run", str(project), "--pid", "p001", "--image", str(image), "--step", "0",
         "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (step,) = json.loads(proc.stdout)["steps"]  # run --json: one stable shape for any count
    assert step["step_index"] == 0
    assert step["execute"]["data"]["result_status"] == "OK"
    human = subprocess.run(
        [str(CLI), "validate", str(project)], capture_output=True, text=True, timeout=300
    )
    assert human.returncode == 0 and "[WARN] step numbering" in human.stdout


def test_the_runner_passes_step_0_unchanged(tmp_path: Path) -> None:
    project = _original_project(tmp_path)
    frame = np.full((48, 64, 3), 90, np.uint8)
    config = RunnerConfig(workers_per_package=1, warmup_calls=0)
    with Runner(config) as runner:
        runner.load(project)
        result = runner.run_step("p001", 0, frame, user_params={"threshold": 0.2})
        assert result["execute"]["status"] == "OK", result
        assert result["execute"]["data"]["result_status"] == "NG"
        assert result["execute"]["data"]["step_index"] == 0
        refused = runner.run_step("p001", -1, frame)
        assert refused["pre_execute"]["error_code"] == "1006"
