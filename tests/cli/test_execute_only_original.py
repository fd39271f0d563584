"""The real original SDK 0.3.2 (from the registry) against ours.

- The example is a genuine 0.3.x package: the ORIGINAL 0.3.2 `cli.run` (in-process) gives the
  verdicts of the ground truth, as ours does.
- The ORIGINAL 0.3.2 host code (`cli.run_adapter`, `cli.validate_adapter`) drives OUR adapter:
  its frames (no phase, a ping-free exchange, images as legacy `.bin` files it writes itself,
  PROC_STRICT_STDIO=1 for validate) get the same verdicts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.original_sdk import run_with_original_sdk

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "execute-only-example"
IMAGES = EXAMPLE / "images"
TRUTH = json.loads((IMAGES / "ground_truth.json").read_text(encoding="utf-8"))
VERSION = "0.3.2"

pytestmark = pytest.mark.slow


def _verdicts(proc_stdout: str) -> dict[str, list]:
    return json.loads(proc_stdout.strip().splitlines()[-1])


def _samples_code(function: str) -> str:
    return (
        "import json\n"
        "from procvision_algorithm_sdk import cli\n"
        f"images = {str(IMAGES)!r}\n"
        f"truth = json.load(open(images + '/ground_truth.json', encoding='utf-8'))\n"
        "info = json.load(open(images + '/' + truth['guide_info']))\n"
        "out = {}\n"
        "for name in sorted(truth['samples']):\n"
        f"    r = cli.{function}({str(EXAMPLE)!r}, images + '/' + name,"
        " images + '/' + truth['guide_image'], 1, truth['step_desc'], info)\n"
        "    data = r['execute'].get('data') or {}\n"
        "    out[name] = [r['execute'].get('status'), data.get('result_status'),"
        " sorted(d['label'] for d in data.get('defect_rects') or []), data.get('phase')]\n"
        "print(json.dumps(out))\n"
    )


def _expected(phase: str | None) -> dict[str, list]:
    """The ground truth; `phase` is "execute" in our adapter's result data, absent otherwise."""
    return {
        name: ["OK", truth["result_status"], truth["missing"], phase]
        for name, truth in TRUTH["samples"].items()
    }


def test_original_sdk_runs_the_example_with_the_ground_truth(tmp_path: Path) -> None:
    proc = run_with_original_sdk(VERSION, tmp_path / "orig", _samples_code("run"))
    assert proc.returncode == 0, proc.stderr
    assert _verdicts(proc.stdout) == _expected(None)


def test_original_host_code_drives_our_adapter(tmp_path: Path) -> None:
    shm = tmp_path / "shm"
    shm.mkdir()
    # The parent is the original 0.3.2 dev host; the adapter it spawns (`python -m
    # procvision_algorithm_sdk.adapter`, no PYTHONPATH) is ours from this venv.
    proc = run_with_original_sdk(
        VERSION,
        tmp_path / "orig",
        "import procvision_algorithm_sdk.cli as c\n" + _samples_code("run_adapter"),
        env={"PROC_SHM_DIR": str(shm)},
    )
    assert proc.returncode == 0, proc.stderr
    assert _verdicts(proc.stdout) == _expected("execute")  # answered by OUR adapter
    # the original host writes `<safe id>.bin` files it never removes: they are in our tmp dir
    assert sorted(p.suffix for p in shm.iterdir()) == [".bin"] * (2 * len(TRUTH["samples"]))


def test_original_validate_full_passes_on_our_adapter(tmp_path: Path) -> None:
    shm = tmp_path / "shm"
    shm.mkdir()
    code = (
        "import json\n"
        "from procvision_algorithm_sdk import cli\n"
        f"print(json.dumps(cli.validate_adapter({str(EXAMPLE)!r}, None)))\n"
    )
    proc = run_with_original_sdk(VERSION, tmp_path / "orig", code, env={"PROC_SHM_DIR": str(shm)})
    assert proc.returncode == 0, proc.stderr
    report = _verdicts(proc.stdout)
    assert report["summary"]["status"] == "PASS", report
