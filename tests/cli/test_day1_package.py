"""Issue 16 items 4 and 10 (CLI part): `package` validates first and shows progress off a TTY."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from algos.cli.broken import write_project
from helpers.package_zips import dependency_wheels

CLI = Path(sys.executable).with_name("procvision-cli")


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _project(root: Path, **parts: str) -> Path:
    project = write_project(root, **parts)
    (project / "requirements.txt").write_text("numpy>=1.23\n", encoding="utf-8")
    (project / "wheels").mkdir()
    for wheel in dependency_wheels():
        shutil.copyfile(wheel, project / "wheels" / wheel.name)
    return project


@pytest.mark.slow
def test_package_refuses_a_project_whose_setup_raises(tmp_path: Path) -> None:
    project = _project(tmp_path / "p", setup='raise RuntimeError("model file missing")')
    out = tmp_path / "p.zip"
    refused = _cli("package", str(project), "-s", "-o", str(out), "--json")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    error = json.loads(refused.stdout)
    assert error["error_code"] == "1009"
    assert "setup" in error["message"] and "model file missing" in error["message"]
    assert "--no-validate" in error["message"]
    assert not out.exists()
    # the opt-out packs it anyway (the station's smoke test will refuse it)
    forced = _cli("package", str(project), "-s", "-o", str(out), "--no-validate", "--json")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert out.is_file()


@pytest.mark.slow
def test_package_prints_progress_lines_when_not_on_a_tty(tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    out = tmp_path / "p.zip"
    result = _cli("package", str(project), "-s", "-o", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("... ")]
    assert any("validat" in ln for ln in lines), result.stderr
    assert len(lines) >= 3, result.stderr
