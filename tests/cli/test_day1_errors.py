"""Issue 16 item 6: an import error is one readable block printed once, with the user's names
(never validate --full's generated hook-counting class), and typos get a "did you mean": the
entry point's module or class, and the manifest's keys."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from algos.cli.broken import MANIFEST, write_project
from PIL import Image

from procvision_algorithm_sdk.contract import check_manifest
from procvision_algorithm_sdk.contract.manifest_keys import misspelled_keys
from procvision_algorithm_sdk.generation import LIFECYCLE, manifest_api


def _cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "procvision_devtools", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=240)


def _image(path: Path) -> Path:
    Image.fromarray(np.full((120, 160, 3), 30, np.uint8)).save(path)
    return path


def _with_entry(tmp_path: Path, entry: str) -> Path:
    return write_project(tmp_path / "p", manifest={**MANIFEST, "entry_point": entry})


@pytest.mark.slow
def test_an_import_error_is_one_readable_block_printed_once(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", prelude="import numpyy")
    user_file = str((project / "broken_algo" / "main.py").resolve())
    image = _image(tmp_path / "a.png")

    text = _cli("run", str(project), "--pid", "p1", "--image", str(image))
    assert text.returncode == 1
    output = text.stdout + text.stderr
    head, *block = text.stderr.rstrip("\n").split("\n")
    assert head == (
        "error 1003: worker start failed: cannot import broken_algo.main:Algo: "
        "ModuleNotFoundError: No module named 'numpyy'"
    ), output
    assert block == [
        "  Traceback (most recent call last):",
        f'    File "{user_file}", line 5, in <module>',
        "      import numpyy",
        "  ModuleNotFoundError: No module named 'numpyy'",
    ], output
    assert text.stdout == ""  # once: not also as a step on stdout, nor as a JSON log line
    assert '{"level"' not in output and "\\n" not in output

    out = _cli("run", str(project), "--pid", "p1", "--image", str(image), "--json")
    assert out.returncode == 1 and out.stderr == ""
    answer = json.loads(out.stdout)
    assert answer["error_code"] == "1003" and answer["message"] == head[len("error 1003: ") :]
    (error,) = [e for e in answer["logs"] if e["level"] == "error"]
    assert re.findall(r'File "([^"]+)"', error["traceback"]) == [user_file]

    full = _cli("validate", str(project), "--full", "--json")
    (hello,) = [c for c in json.loads(full.stdout)["checks"] if c["name"] == "protocol hello"]
    assert hello["result"] == "FAIL" and "cannot import broken_algo.main:Algo:" in hello["message"]
    assert "_pv_hookcount" not in full.stdout + full.stderr and "Counted" not in full.stdout


@pytest.mark.slow
def test_did_you_mean_for_a_typo_in_the_entry_point(tmp_path: Path) -> None:
    image = _image(tmp_path / "a.png")
    module_typo = _with_entry(tmp_path / "m", "broken_algo.mian:Algo")
    hint = "did you mean 'broken_algo.main:Algo'?"
    quick = _cli("validate", str(module_typo), "--json")
    (entry,) = [c for c in json.loads(quick.stdout)["checks"] if c["name"] == "entry import"]
    assert entry["code"] == "2002" and entry["message"].endswith(hint), entry
    assert "frozen" not in entry["message"]  # no importlib frame named as the place
    full = _cli("validate", str(module_typo), "--full")
    assert full.returncode == 1 and hint in full.stdout and "_pv_hookcount" not in full.stdout
    run = _cli("run", str(module_typo), "--pid", "p1", "--image", str(image))
    assert run.returncode == 1 and run.stderr.startswith("error 1003: ") and hint in run.stderr

    class_typo = _with_entry(tmp_path / "c", "broken_algo.main:Algoo")
    quick = _cli("validate", str(class_typo))
    assert "has no attribute 'Algoo'; " + hint in quick.stdout, quick.stdout
    run = _cli("run", str(class_typo), "--pid", "p1", "--image", str(image))
    assert run.stderr.rstrip("\n").endswith(hint) and "Traceback" not in run.stderr, run.stderr


def test_did_you_mean_for_manifest_keys(tmp_path: Path) -> None:
    manifest = {k: v for k, v in MANIFEST.items() if k not in ("supported_pids", "entry_point")}
    manifest.update(supported_pid=["p1"], entrypoint="broken_algo.main:Algo")
    # not taken for an execute-only manifest (which has no pids): it is a typo of a lifecycle one
    assert manifest_api(manifest) == LIFECYCLE
    messages = {p.where: p.message for p in check_manifest(manifest)}
    assert messages["manifest.supported_pids"] == (
        "manifest.supported_pids is required; the manifest has 'supported_pid': "
        "did you mean 'supported_pids'?"
    )
    assert messages["manifest.entry_point"].endswith(
        "; the manifest has 'entrypoint': did you mean 'entry_point'?"
    )
    # beside the right key, or for an optional one: a warning (the key is ignored as written)
    extra = {**MANIFEST, "descripton": "x", "supported_pid": ["p9"], "author": "someone"}
    assert check_manifest(extra) == []
    assert {p.where: p.message for p in misspelled_keys(extra)} == {
        "manifest.descripton": "unknown key 'descripton': did you mean 'description'? "
        "(it is ignored as written)",
        "manifest.supported_pid": "unknown key 'supported_pid': did you mean "
        "'supported_pids'? (it is ignored as written)",
    }
    project = write_project(tmp_path / "p", manifest=extra)
    report = json.loads(_cli("validate", str(project), "--json").stdout)
    warned = [c["where"] for c in report["checks"] if c["result"] == "WARN"]
    assert warned == ["manifest.descripton", "manifest.supported_pid"], report
    assert report["summary"]["status"] == "PASS"
