"""Issue 16 item 11 (rest): init's --module/--class, one home for name/version/pids, --target.

Through the real `procvision-cli`: the names given are the names written; a version bump in
manifest.json alone keeps the project valid (the template's get_info reads the manifest); the
station target comes from --target/--python-version, from a person at a terminal (a real pty),
or is a stated guess that never copies this machine's glibc.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

CLI = Path(sys.executable).with_name("procvision-cli")


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CLI), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_module_and_class_options_name_the_code(tmp_path: Path) -> None:
    project = tmp_path / "p"
    made = _cli("init", "产线检测", "-d", str(project), "--module", "blob", "--class", "Blob")
    assert made.returncode == 0, made.stderr
    assert _read(project / "manifest.json")["entry_point"] == "blob.main:Blob"
    assert "class Blob(BaseAlgorithm)" in (project / "blob" / "main.py").read_text("utf-8")
    assert "from blob.main import SUPPORTED_PIDS, Blob" in (
        project / "tests" / "test_algorithm.py"
    ).read_text("utf-8")
    checked = _cli("validate", str(project), "--json")
    assert checked.returncode == 0, checked.stdout


def test_bad_module_and_class_names_are_refused_with_1006(tmp_path: Path) -> None:
    for option, value in (("--module", "import"), ("--module", "json"), ("--class", "1st")):
        refused = _cli("init", "demo", "-d", str(tmp_path / value), option, value, "--json")
        assert refused.returncode == 1, (option, value, refused.stdout)
        error = json.loads(refused.stdout)
        assert error["error_code"] == "1006" and option in error["message"], error
        assert not (tmp_path / value).exists()


@pytest.mark.slow
def test_a_version_bump_is_one_edit_in_the_manifest(tmp_path: Path) -> None:
    project = tmp_path / "p"
    assert _cli("init", "demo", "-d", str(project), "--pids", "A1,A2").returncode == 0
    main = (project / "demo" / "main.py").read_text("utf-8")
    assert "1.0.0" not in main and "A1" not in main  # nothing to keep in step by hand
    manifest = _read(project / "manifest.json")
    manifest["version"] = "1.2.0"
    manifest["supported_pids"] = ["A1", "A2", "A3"]
    (project / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    checked = _cli("validate", str(project), "--json")
    assert checked.returncode == 0, checked.stdout
    ran = _cli("run", str(project), "--pid", "A3", "--image", _image(tmp_path), "--json")
    assert ran.returncode == 0, ran.stdout + ran.stderr


def _image(tmp_path: Path) -> str:
    import numpy as np
    from PIL import Image

    path = tmp_path / "frame.png"
    Image.fromarray(np.full((60, 80, 3), 128, np.uint8)).save(path)
    return str(path)


def test_target_options_write_the_stations_env_file(tmp_path: Path) -> None:
    project = tmp_path / "p"
    made = _cli("init", "demo", "-d", str(project), "--target", "win_amd64",
                "--python-version", "3.10", "--json")  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert _read(project / ".procvision_env.json") == {
        "python_version": "3.10",
        "implementation": "cp",
        "abi": "cp310",
        "wheels_platform": "win_amd64",
    }
    assert "notes" not in json.loads(made.stdout)
    linux = tmp_path / "linux"
    assert _cli("init", "demo", "-d", str(linux), "--target", "linux_x86_64").returncode == 0
    assert _read(linux / ".procvision_env.json")["wheels_platform"] == "manylinux_2_28_x86_64"
    refused = _cli("init", "demo", "-d", str(tmp_path / "x"), "--target", "linux_s390x")
    assert refused.returncode == 1 and "error 1006: --target 'linux_s390x'" in refused.stderr


def test_without_a_terminal_the_target_is_a_stated_guess_not_this_glibc(tmp_path: Path) -> None:
    project = tmp_path / "p"
    made = _cli("init", "demo", "-d", str(project))
    assert made.returncode == 0, made.stderr
    env = _read(project / ".procvision_env.json")
    if sys.platform.startswith("linux"):
        # the broadest tag current numpy/Pillow wheels exist for, not manylinux_<this glibc>
        assert env["wheels_platform"] in ("manylinux_2_28_x86_64", "manylinux_2_28_aarch64")
    assert env["python_version"] == "{}.{}".format(*sys.version_info[:2])
    assert "note: station target" in made.stdout and "--target" in made.stdout


def _run_on_a_pty(args: list[str], answers: bytes, deadline_s: float = 120) -> tuple[int, str]:
    """Run the CLI with a real terminal on stdin and stdout; type `answers`; (rc, screen)."""
    master, slave = os.openpty()
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    os.write(master, answers)
    screen = b""
    deadline = time.monotonic() + deadline_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                screen += chunk
            elif proc.poll() is not None:
                break
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        os.close(master)
    return rc, screen.decode("utf-8", "replace")


def test_on_a_terminal_init_asks_for_the_station(tmp_path: Path) -> None:
    project = tmp_path / "p"
    # a wrong platform is asked again
    rc, screen = _run_on_a_pty(
        [str(CLI), "init", "demo", "-d", str(project)], b"linux_s390x\nwin_amd64\n3.9\n"
    )
    assert rc == 0, screen
    assert "Station platform" in screen and "Station Python version" in screen, screen
    assert "is not a station platform" in screen, screen
    env = _read(project / ".procvision_env.json")
    assert (env["wheels_platform"], env["python_version"], env["abi"]) == (
        "win_amd64",
        "3.9",
        "cp39",
    )
    assert "note: station target" not in screen  # nothing was guessed
