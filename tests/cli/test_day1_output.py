"""Issue 16 item 7: one stable `run --json` shape, repeated images all run, UTF-8 JSON in both
CLIs, quiet on a closed pipe, `procvision-runner --version`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from algos.cli.broken import write_project
from PIL import Image

from procvision_algorithm_sdk._version import __version__
from procvision_runner._stdout import dump_json

BIN = Path(sys.executable).parent


def _run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout
    )


def _image(path: Path, value: int) -> Path:
    Image.fromarray(np.full((120, 160, 3), value, np.uint8)).save(path)
    return path


@pytest.mark.slow
def test_run_json_has_one_shape_and_every_image_runs(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p")
    a, b = _image(tmp_path / "a.png", 10), _image(tmp_path / "b.png", 200)
    one = _run("procvision-cli", "run", str(project), "--pid", "p1", "--image", str(a), "--json")
    assert one.returncode == 0, one.stdout + one.stderr
    (entry,) = json.loads(one.stdout)["steps"]
    assert entry["step_index"] == 1 and entry["image"] == str(a)
    two = _run(
        "procvision-cli", "run", str(project), "--pid", "p1",
        "--image", str(a), "--image", str(b), "--json",
    )  # fmt: skip
    assert two.returncode == 0, two.stdout + two.stderr
    steps = json.loads(two.stdout)["steps"]
    assert [(s["image"], s["step_index"]) for s in steps] == [(str(a), 1), (str(b), 1)]
    assert all(s["execute"]["status"] == "OK" for s in steps)
    text = _run("procvision-cli", "run", str(project), "--pid", "p1", "--image", str(a),
                "--image", str(b))  # fmt: skip
    assert text.stdout.count("step 1") == 2 and f"image {b}" in text.stdout


def test_runner_version_and_utf8_json() -> None:
    version = _run("procvision-runner", "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"procvision-runner {__version__}"
    assert dump_json({"标签": "划痕"}) == '{\n  "标签": "划痕"\n}'


@pytest.mark.slow
def test_a_closed_pipe_ends_both_clis_quietly(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p")
    commands = [
        [str(BIN / "procvision-runner"), "--store", str(tmp_path / "store"), "list", "--json"],
        [str(BIN / "procvision-cli"), "validate", str(project), "--json"],
    ]
    for command in commands:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader is gone before the program writes (`| head -0`)
        err = proc.stderr.read().decode()
        proc.stderr.close()
        assert proc.wait(timeout=120) == 141, err
        assert "Traceback" not in err and "BrokenPipe" not in err, err
