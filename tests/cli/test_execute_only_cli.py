"""Dev Runner checks of execute-only projects: init, the original init_project, validate's API
checks (neither shape, manifest/class disagreement)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from procvision_algorithm_sdk.cli import init_project, validate

BIN = Path(sys.executable).parent


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "procvision-cli"), *args], capture_output=True, text=True, timeout=300
    )


def failed(report: dict) -> dict[str, str]:
    return {c["name"]: c["message"] for c in report["checks"] if c["result"] == "FAIL"}


@pytest.mark.slow
def test_init_api_execute_only_passes_validate(tmp_path: Path) -> None:
    made = cli("init", "零件 检测", "-d", str(tmp_path / "p"), "--api", "execute-only", "--json")
    assert made.returncode == 0, made.stderr
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text(encoding="utf-8"))
    assert "supported_pids" not in manifest and "steps" not in manifest
    report = validate(str(tmp_path / "p"))
    assert report["summary"]["status"] == "PASS", failed(report)
    assert any(c["name"] == "algorithm API" for c in report["checks"])


def test_original_init_project_with_four_arguments(tmp_path: Path) -> None:
    created = init_project("Screw check", str(tmp_path / "s"), "1.2.0", "the 0.3.x call")
    assert created == {"status": "OK", "path": str(tmp_path / "s")}
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["version"] == "1.2.0" and manifest["description"] == "the 0.3.x call"
    assert "supported_pids" not in manifest
    assert validate(str(tmp_path / "s"))["summary"]["status"] == "PASS"


def _project(root: Path, body: str, manifest: dict) -> Path:
    (root / "algo").mkdir(parents=True)
    (root / "algo" / "__init__.py").write_text("")
    (root / "algo" / "main.py").write_text(
        "from procvision_algorithm_sdk import BaseAlgorithm\n\n\nclass Algo(BaseAlgorithm):\n"
        + body
    )
    (root / "manifest.json").write_text(
        json.dumps({"name": "a", "version": "1.0.0", "entry_point": "algo.main:Algo", **manifest})
    )
    return root


def test_validate_names_both_apis_for_a_class_of_neither_shape(tmp_path: Path) -> None:
    project = _project(tmp_path / "n", "    def setup(self):\n        pass\n", {})
    report = validate(str(project))
    problems = failed(report)
    assert "algorithm API" in problems
    assert "lifecycle" in problems["algorithm API"]
    assert "execute-only" in problems["algorithm API"]


def test_validate_refuses_an_execute_only_class_with_a_lifecycle_manifest(tmp_path: Path) -> None:
    body = (
        "    def execute(self, step_index, step_desc, cur_image, guide_image, guide_info):\n"
        "        return {'status': 'OK', 'data': {'result_status': 'OK'}}\n"
    )
    project = _project(tmp_path / "m", body, {"supported_pids": ["p1"]})
    problems = failed(validate(str(project)))
    assert "supported_pids" in problems["algorithm API"]
