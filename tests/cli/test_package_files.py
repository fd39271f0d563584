"""Issue 16 item 12: `package` ships what the project means to ship, and says what went in.

Through the real `procvision-cli`: a project made by `init`, with a gitignored scratch folder,
the template's tests folder (left out by the manifest's package.exclude), a nested .gitignore
with a negation, then the --include/--exclude flags; the zip's entries are asserted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers.package_zips import dependency_wheels, sdk_wheel

CLI = Path(sys.executable).with_name("procvision-cli")
GENERATED = {"manifest.json", "requirements.txt", ".procvision_env.json", "checksums.sha256"}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, timeout=600, check=False
    )


def _package(project: Path, *args: str) -> subprocess.CompletedProcess:
    """package -s (the project's wheels/), the cached SDK wheel, no validate: files only."""
    return _cli(
        "package", str(project), "-s", "--no-validate", "--sdk-wheel", str(sdk_wheel()), *args
    )


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "proj"
    made = _cli("init", "demo", "-d", str(project), "--json")
    assert made.returncode == 0, made.stdout + made.stderr
    (project / "wheels").mkdir()
    for wheel in dependency_wheels():
        shutil.copyfile(wheel, project / "wheels" / wheel.name)
    (project / "scratch").mkdir()
    (project / "scratch" / "frame-0001.png").write_bytes(b"\x89PNG scratch")
    (project / "scratch" / "notes.txt").write_text("try a lower threshold\n", encoding="utf-8")
    (project / "debug.log").write_text("noise\n", encoding="utf-8")
    (project / "README.md").write_text("# demo\n", encoding="utf-8")
    (project / "models").mkdir()
    (project / "models" / "weights.bin").write_bytes(b"\x00" * 64)
    with (project / ".gitignore").open("a", encoding="utf-8") as f:
        f.write("scratch/\n*.log\nmodels/\n")
    (project / "demo" / ".gitignore").write_text("*.tmp\n!keep.tmp\n", encoding="utf-8")
    (project / "demo" / "cache.tmp").write_text("x", encoding="utf-8")
    (project / "demo" / "keep.tmp").write_text("y", encoding="utf-8")
    return project


def _entries(zip_path: Path) -> set[str]:
    with zipfile.ZipFile(zip_path) as zf:
        return {n for n in zf.namelist() if not n.startswith("wheels/")}


@pytest.mark.slow
def test_package_honours_gitignore_and_the_manifest_exclude_list(tmp_path: Path) -> None:
    project = _project(tmp_path)
    out = tmp_path / "demo.zip"
    result = _package(project, "-o", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert _entries(out) == GENERATED | {
        "README.md",
        "demo/__init__.py",
        "demo/main.py",
        "demo/keep.tmp",  # re-included by the nested .gitignore's negation
    }
    # the summary says what went in and what stayed out, and why
    lines = result.stdout.splitlines()
    went_in = next(ln for ln in lines if ln.strip().startswith("in:"))
    assert "demo/ (3 files)" in went_in and "README.md" in went_in, result.stdout
    stayed_out = next(ln for ln in lines if ln.strip().startswith("out:"))
    assert "gitignored: " in stayed_out and "scratch/" in stayed_out, result.stdout
    assert "debug.log" in stayed_out and "models/" in stayed_out, result.stdout
    assert "excluded: tests/" in stayed_out, result.stdout

    # -v lists every file and the reason each one stayed out
    verbose = _package(project, "-o", str(out), "-v")
    assert verbose.returncode == 0, verbose.stdout + verbose.stderr
    assert "    demo/main.py" in verbose.stdout.splitlines()
    assert "    demo/cache.tmp (gitignored)" in verbose.stdout.splitlines()
    assert "    tests/ (excluded)" in verbose.stdout.splitlines()


@pytest.mark.slow
def test_package_include_and_exclude_flags(tmp_path: Path) -> None:
    project = _project(tmp_path)
    out = tmp_path / "demo.zip"
    result = _package(
        project,
        "-o",
        str(out),
        "--include",
        "demo/*.py",
        "--include",
        "models/",  # an include list wins over .gitignore: the weights ship on purpose
        "--exclude",
        "demo/__init__.py",
        "--json",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert _entries(out) == GENERATED | {"demo/main.py", "models/weights.bin"}
    summary = json.loads(result.stdout)
    assert summary["left_out"]["README.md"] == "not included"
    assert summary["left_out"]["demo/__init__.py"] == "excluded"
    assert summary["left_out"]["tests/"] == "excluded"


@pytest.mark.slow
def test_a_malformed_package_table_is_refused_with_2002(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    assert _cli("init", "demo", "-d", str(project)).returncode == 0
    manifest = json.loads((project / "manifest.json").read_text(encoding="utf-8"))
    manifest["package"] = {"exclude": "tests/", "exlude": ["x"]}
    (project / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    result = _package(project, "--json")
    assert result.returncode == 1
    error = json.loads(result.stdout)
    assert error["error_code"] == "2002"
    assert "manifest.package" in error["message"]
    report = _cli("validate", str(project), "--json")
    messages = [c["message"] for c in json.loads(report.stdout)["checks"] if c["result"] == "FAIL"]
    assert any("manifest.package.exclude must be a list" in m for m in messages), messages
    assert any("manifest.package.exlude: unknown key" in m for m in messages), messages
