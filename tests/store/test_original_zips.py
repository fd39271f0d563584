"""Zips built by the ORIGINAL tool (0.0.7 `package`): validate --zip, install, inspect (item 5).

The original writes `<project>/manifest.json, <project>/<source>..., <project>/requirements.txt,
requirements.sanitized.txt, deploy_bootstrap.json` with `wheels/` at the zip root beside the
project folder; its installer installed requirements.sanitized.txt. The zip here is written by
the original code itself, run from its real wheel.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers.original_sdk import run_with_original_sdk
from helpers.package_zips import (
    EXAMPLE,
    dependency_wheels,
    example_files,
    requirements_for,
    sdk_wheel,
)

from procvision_runner.store.zipcheck import check_zip

pytestmark = pytest.mark.slow
NAME = "algorithm-example"
CLI = Path(sys.executable).parent / "procvision-cli"


def original_project(base: Path, wheels: list[Path], requirements: str) -> Path:
    """The example as a project folder with its wheels in <project>/wheels (package -s)."""
    project = base / NAME
    for rel, data in example_files().items():
        target = project / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (project / "requirements.txt").write_text(requirements, encoding="utf-8")
    (project / "wheels").mkdir()
    for wheel in wheels:
        shutil.copyfile(wheel, project / "wheels" / wheel.name)
    return project


def package_with_original_tool(project: Path, out: Path, scratch: Path) -> Path:
    """Run the original 0.0.7 `package(...)` (skip download, no embedded Python runtime)."""
    code = (
        "import json\n"
        "from procvision_algorithm_sdk.cli import package\n"
        f"r = package({str(project)!r}, {str(out)!r}, None, False, None, None, None, None, "
        "True, False, None, None, None)\n"
        "print(json.dumps(r))\n"
    )
    proc = run_with_original_sdk("0.0.7", scratch / "original-sdk", code, cwd=scratch)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["status"] == "OK", proc.stdout
    return out


def hashed_requirements(wheels: list[Path]) -> str:
    """Pins for every wheel, one carrying --hash: pip would then demand hashes on every line,
    so only the original's requirements.sanitized.txt can install (what its installer used)."""
    lines = requirements_for(wheels).splitlines()
    numpy = next(w for w in wheels if w.name.startswith("numpy-"))
    digest = hashlib.sha256(numpy.read_bytes()).hexdigest()
    lines = [
        f"{line} --hash=sha256:{digest}" if line.startswith("numpy") else line for line in lines
    ]
    return "\n".join(lines) + "\n"


def runner_cli(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "procvision_runner.cli", "--store", str(store), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=dict(os.environ),
    )


def test_original_layout_validates_installs_and_inspects(tmp_path: Path) -> None:
    wheels = [*dependency_wheels(), sdk_wheel()]
    project = original_project(tmp_path / "work", wheels, hashed_requirements(wheels))
    out = package_with_original_tool(project, tmp_path / "orig.zip", tmp_path)
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
    assert f"{NAME}/manifest.json" in names and "manifest.json" not in names
    assert (
        f"{NAME}/requirements.sanitized.txt" in names and f"{NAME}/deploy_bootstrap.json" in names
    )
    assert {n.split("/")[0] for n in names} == {NAME, "wheels"}
    assert all(f"wheels/{w.name}" in names for w in wheels)

    layout, problems = check_zip(out)
    assert layout is not None, problems
    assert layout.wheels_beside and layout.requirements_file == "requirements.sanitized.txt"

    report = subprocess.run(
        [str(CLI), "validate", "--zip", str(out), "--json"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert report.returncode == 0, report.stdout + report.stderr
    assert json.loads(report.stdout)["summary"]["status"] == "PASS"

    store = tmp_path / "store"
    installed = runner_cli(store, "install", str(out))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    deployed = store / "deployed" / NAME / "1.0.0"
    assert (deployed / "wheels").is_dir() and (deployed / "deploy_bootstrap.json").is_file()
    activated = runner_cli(store, "activate", NAME, "1.0.0", "--pid", "p001")
    assert activated.returncode == 0, activated.stderr
    truth = json.loads((EXAMPLE / "images" / "ground_truth.json").read_text())["images"]
    names = ("ok_01.png", "ng_missing_1.png")
    images = [a for name in names for a in ("--image", str(EXAMPLE / "images" / name))]
    inspected = runner_cli(store, "inspect", "--pid", "p001", "--step", "2", *images, "--json")
    assert inspected.returncode == 0, inspected.stderr
    lines = inspected.stdout.splitlines()  # one JSON line per image, in the given order
    assert len(lines) == len(names), inspected.stdout
    for name, line in zip(names, lines, strict=True):
        result = json.loads(line)
        assert result["execute"]["data"]["result_status"] == truth[name]["step2"]


def test_original_layout_keeps_every_safety_check(tmp_path: Path) -> None:
    """wheels/ beside the folder is accepted; anything else beside it, or a clash, is not."""
    manifest = example_files()["manifest.json"]
    base = {
        f"{NAME}/manifest.json": manifest,
        f"{NAME}/requirements.txt": b"",
        "wheels/a.whl": b"x",
    }
    cases = {
        "accepted": base,
        "third top folder": {**base, "other/x.txt": b"x"},
        "escape in wheels": {**base, "wheels/../../evil": b"x"},
        "clash": {**base, f"{NAME}/wheels/a.whl": b"y"},
    }
    for label, members in cases.items():
        path = tmp_path / f"{label.replace(' ', '_')}.zip"
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)
        layout, problems = check_zip(path)
        if label == "accepted":
            assert layout is not None and layout.files == ("manifest.json", "requirements.txt",
                                                           "wheels/a.whl"), problems  # fmt: skip
            continue
        assert layout is None and problems, label
        assert problems[0].code in ("2001", "2002"), (label, problems)
