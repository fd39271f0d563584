"""The original SDK's Python helpers and options, on today's tools (issue 11, item 3)."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.original_sdk import run_with_original_sdk
from PIL import Image

from procvision_algorithm_sdk import cli as seed_cli
from procvision_devtools.main import build_parser
from procvision_devtools.package import build_package

HELPERS = ("init_project", "run_adapter", "validate_adapter", "run", "validate")


def _image(path: Path, value: int = 120) -> Path:
    Image.fromarray(np.full((240, 320, 3), value, np.uint8)).save(path)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    created = seed_cli.init_project(
        "Board check", str(tmp_path / "proj"), "p001,p002", "1.2.0", None
    )
    assert created == {"status": "OK", "path": str(tmp_path / "proj")}
    return Path(created["path"])


@pytest.mark.slow
def test_signatures_match_the_original_sdk(tmp_path: Path) -> None:
    code = (
        "import inspect, json\n"
        "from procvision_algorithm_sdk import cli\n"
        f"names = {list(HELPERS)!r}\n"
        "print(json.dumps({n: list(inspect.signature(getattr(cli, n)).parameters) "
        "for n in names}))\n"
    )
    proc = run_with_original_sdk("0.0.7", tmp_path / "original", code)
    assert proc.returncode == 0, proc.stderr
    original = json.loads(proc.stdout)
    for name in HELPERS:
        ours = list(inspect.signature(getattr(seed_cli, name)).parameters)
        assert ours[: len(original[name])] == original[name], name


def test_init_project_shapes(tmp_path: Path, project: Path) -> None:
    report = seed_cli.validate(str(project))
    assert report["summary"]["status"] == "PASS", report
    placeholder = seed_cli.init_project("x", str(tmp_path / "x"), "", "1.0.0", "d")
    assert placeholder["status"] == "OK"
    manifest = json.loads((tmp_path / "x" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["supported_pids"] == ["PID_TO_FILL"]
    again = seed_cli.init_project("x", str(tmp_path / "x"), "", "1.0.0", "d")
    assert again["status"] == "ERROR" and again["error_code"] == "2002" and again["message"]


def test_run_always_returns_dicts_for_both_phases(project: Path, tmp_path: Path) -> None:
    image = _image(tmp_path / "frame.png")
    ok = seed_cli.run(str(project), "p001", str(image))
    assert ok["pre_execute"]["status"] == "OK" and ok["execute"]["status"] == "OK"
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG not really")
    for result, code in (
        (seed_cli.run(str(project), "p001", str(junk)), "1002"),
        (seed_cli.run(str(project), "nope", str(image)), "1001"),
        (seed_cli.run(str(tmp_path / "missing"), "p001", str(image)), "2002"),
        # pre_execute refused (a param out of range): execute did not run, with pre's code
        (seed_cli.run(str(project), "p001", str(image), '{"threshold": 999}'), "1006"),
    ):
        assert result["pre_execute"]["status"] == "ERROR"
        assert result["pre_execute"]["error_code"] == code
        execute = result["execute"]
        assert isinstance(execute, dict) and execute.get("status") == "ERROR"
        assert execute["error_code"] == code and execute["message"].startswith("not run: ")


@pytest.mark.slow
def test_run_adapter_and_validate_adapter(project: Path, tmp_path: Path) -> None:
    image = _image(tmp_path / "frame.png")
    result = seed_cli.run_adapter(str(project), "p002", str(image), None, 1)
    assert result["pre_execute"]["status"] == "OK"
    assert result["execute"]["data"]["result_status"] in ("OK", "NG")
    missing = seed_cli.run_adapter(str(project), "p002", str(tmp_path / "no.png"), None)
    assert missing["execute"]["status"] == "ERROR" and missing["execute"]["error_code"] == "1002"
    entry = json.loads((project / "manifest.json").read_text(encoding="utf-8"))["entry_point"]
    overridden = seed_cli.run_adapter(str(project), "p002", str(image), None, None, entry)
    assert overridden["execute"]["status"] == "OK"
    report = seed_cli.validate_adapter(str(project), None)
    assert report["summary"]["status"] == "PASS", report
    wrong = seed_cli.validate_adapter(str(project), entry.replace(":", ":Missing"))
    assert wrong["summary"]["status"] == "FAIL"


def test_original_package_option_names_parse() -> None:
    args = build_parser().parse_args(["package", "p", "--wheels-platform", "win_amd64", "-a"])
    assert (args.platform, args.auto_freeze) == ("win_amd64", True)
    short = build_parser().parse_args(["package", "p", "-w", "manylinux2014_x86_64"])
    assert (short.platform, short.auto_freeze) == ("manylinux2014_x86_64", False)


def test_auto_freeze_writes_requirements_from_pip_freeze(project: Path, tmp_path: Path) -> None:
    (project / "requirements.txt").unlink()
    freeze = subprocess.run(
        [sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True, timeout=300
    ).stdout
    numpy_line = next(line for line in freeze.splitlines() if line.startswith("numpy=="))
    with pytest.raises(Exception) as err:  # -s with no wheels: the frozen pins are all missing
        build_package(project, tmp_path / "out.zip", skip_download=True, auto_freeze=True)
    assert getattr(err.value, "code", None) in ("2004", "2003")
    written = (project / "requirements.txt").read_text(encoding="utf-8")
    assert numpy_line in written.splitlines()
    pins = [line for line in written.splitlines() if not line.startswith("#")]
    assert not [line for line in pins if "procvision" in line or line.startswith("-e")]
    assert not (tmp_path / "out.zip").exists()
