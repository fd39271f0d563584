"""Packages that carry the ORIGINAL SDK (0.0.7 from the registry): substituted at install."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.original_sdk import original_sdk_wheel
from helpers.package_zips import (
    EXAMPLE,
    dependency_wheels,
    make_package_zip,
    requirements_for,
    sdk_wheel,
)

from procvision_algorithm_sdk._version import __version__

pytestmark = pytest.mark.slow
NAME = "algorithm-example"


def runner_cli(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "procvision_runner.cli", "--store", str(store), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=dict(os.environ),
    )


def test_a_package_pinned_to_0_0_7_installs_substituted_and_runs(tmp_path: Path) -> None:
    original = original_sdk_wheel("0.0.7")
    wheels = [*dependency_wheels(), original]
    requirements = requirements_for(wheels)
    assert "procvision-algorithm-sdk==0.0.7" in requirements
    package = make_package_zip(tmp_path / "pinned.zip", wheels=wheels, requirements=requirements)
    store = tmp_path / "store"
    installed = runner_cli(store, "install", str(package))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    listed = json.loads(runner_cli(store, "list", "--json").stdout)
    (entry,) = listed["packages"]
    assert entry["sdk"] == f"substituted 0.0.7 -> {__version__}"
    deployed = store / "deployed" / NAME / "1.0.0"
    assert not (deployed / "wheels" / original.name).exists()
    venv_python = deployed / "venv" / "bin" / "python"
    probe = subprocess.run(
        [str(venv_python), "-c", "import importlib.metadata as m, procvision_algorithm_sdk as s; "
         "print(m.version('procvision-algorithm-sdk'), s.__version__)"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert probe.stdout.split() == [__version__, __version__], probe.stderr
    assert f"procvision-algorithm-sdk=={__version__}" in (deployed / "requirements.txt").read_text()
    assert runner_cli(store, "activate", NAME, "1.0.0", "--pid", "p001").returncode == 0
    truth = json.loads((EXAMPLE / "images" / "ground_truth.json").read_text())["images"]
    for name in ("ok_01.png", "ng_missing_2.png"):
        inspected = runner_cli(
            store, "inspect", "--pid", "p001", "--step", "1", "--step", "2",
            "--image", str(EXAMPLE / "images" / name), "--json",
        )  # fmt: skip
        assert inspected.returncode == 0, inspected.stderr
        steps = [json.loads(line) for line in inspected.stdout.splitlines()]
        verdicts = [s["execute"]["data"]["result_status"] for s in steps]
        assert verdicts == [truth[name]["step1"], truth[name]["step2"]]


def test_package_keeps_an_original_pin_visible(tmp_path: Path) -> None:
    from procvision_devtools.package import build_package

    project = tmp_path / "proj"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("images", "__pycache__"))
    deps = dependency_wheels()
    (project / "requirements.txt").write_text(
        requirements_for(deps) + "procvision-algorithm-sdk==0.0.7\n", encoding="utf-8"
    )
    (project / "wheels").mkdir()
    for wheel in deps:
        shutil.copyfile(wheel, project / "wheels" / wheel.name)
    summary = build_package(
        project, tmp_path / "out.zip", skip_download=True, sdk_wheel=str(sdk_wheel())
    )
    assert f"procvision-algorithm-sdk=={__version__}" in summary["requirements"]
    notes = [n for n in summary["notes"] if "procvision-algorithm-sdk==0.0.7" in n]
    assert notes and f"=={__version__}" in notes[0]
