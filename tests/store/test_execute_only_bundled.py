"""The execute-only example pinned to the ORIGINAL procvision-algorithm-sdk==0.3.2 (from the
registry), packaged by the original 0.3.2 `package()` itself: installs with our SDK substituted
and gives the ground truth's verdicts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from helpers.original_sdk import original_sdk_wheel, run_with_original_sdk
from helpers.package_zips import dependency_wheels, requirements_for
from PIL import Image

from procvision_algorithm_sdk._version import __version__

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "execute-only-example"
IMAGES = EXAMPLE / "images"
TRUTH = json.loads((IMAGES / "ground_truth.json").read_text(encoding="utf-8"))
PID = "station-1"


def runner_cli(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "procvision-runner"), "--store", str(store), *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_pinned_to_0_3_2_installs_substituted_and_runs(original_zip: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    installed = runner_cli(store, "install", str(original_zip))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    (entry,) = json.loads(runner_cli(store, "list", "--json").stdout)["packages"]
    assert entry["sdk"] == f"substituted 0.3.2 -> {__version__}"
    assert entry["api"] == "execute-only" and entry["supported_pids"] == []
    activated = runner_cli(store, "activate", "part-presence", "1.0.0", "--pid", PID)
    assert activated.returncode == 0, activated.stderr
    guide_info = IMAGES / TRUTH["guide_info"]
    names = ("cur_ok_02.jpg", "cur_ng_1_4.png")
    images = [a for name in names for a in ("--image", str(IMAGES / name))]
    inspected = runner_cli(
        store, "inspect", "--pid", PID, "--step", "1", *images,
        "--guide-image", str(IMAGES / TRUTH["guide_image"]), "--step-desc",
        TRUTH["step_desc"], "--guide-info", f"@{guide_info}", "--json",
    )  # fmt: skip
    assert inspected.returncode == 0, inspected.stdout + inspected.stderr
    lines = inspected.stdout.splitlines()
    assert len(lines) == len(names), inspected.stdout  # one JSON line per image (one step)
    for name, line in zip(names, lines, strict=True):
        truth = TRUTH["samples"][name]
        result = json.loads(line)["execute"]
        assert result["data"]["result_status"] == truth["result_status"], name
        assert sorted(r["label"] for r in result["data"]["defect_rects"]) == truth["missing"]


@pytest.fixture(scope="module")
def original_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example pinned to 0.3.2, zipped by the original 0.3.2 package() itself.

    Built once per module: the tests only read it (an install copies what it needs).
    """
    tmp_path = tmp_path_factory.mktemp("original-zip")
    project = tmp_path / "part-presence"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("images", "__pycache__"))
    wheels = [*dependency_wheels(), original_sdk_wheel("0.3.2")]
    (project / "wheels").mkdir()
    for wheel in wheels:
        shutil.copyfile(wheel, project / "wheels" / wheel.name)
    requirements = requirements_for(wheels)
    assert "procvision-algorithm-sdk==0.3.2" in requirements
    (project / "requirements.txt").write_text(requirements, encoding="utf-8")
    out = tmp_path / "part-presence-offline.zip"
    code = (
        "from procvision_algorithm_sdk.cli import package\n"
        f"print(package({str(project)!r}, {str(out)!r}, None, False, None, None, None, None,"
        " True, False, None, None, None))\n"
    )  # the original tool's own package(), skip_download=True (wheels/ is filled above)
    made = run_with_original_sdk("0.3.2", tmp_path / "orig", code)
    assert made.returncode == 0 and "'OK'" in made.stdout, made.stdout + made.stderr
    return out


def test_keep_bundled_0_3_2_runs_on_the_legacy_path(
    original_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from procvision_runner import Runner, RunnerConfig, legacy_transport

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    store = tmp_path / "store"
    installed = runner_cli(store, "install", str(original_zip), "--keep-bundled-sdk")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    (entry,) = json.loads(runner_cli(store, "list", "--json").stdout)["packages"]
    assert (entry["sdk"], entry["transport"]) == ("bundled 0.3.2 (kept)", "files")
    deployed = store / "deployed" / "part-presence" / "1.0.0"
    guide_info = json.loads((IMAGES / TRUTH["guide_info"]).read_text(encoding="utf-8"))
    guide = np.asarray(Image.open(IMAGES / TRUTH["guide_image"]).convert("RGB"))
    with Runner(RunnerConfig(workers_per_package=1, warmup_calls=0)) as runner:
        key = runner.load(
            deployed, python=str(deployed / "venv" / "bin" / "python"), transport="files"
        )
        runner.route([PID], key)
        (described,) = runner.packages()
        assert described["state"] == "READY" and described["info"]["api"] == "execute-only"
        (worker_dir,) = [
            d for d in legacy_transport.frames_root().iterdir()
            if d.name.startswith(f"{os.getpid()}-")
        ]  # fmt: skip
        for name, truth in sorted(TRUTH["samples"].items()):
            cur = np.asarray(Image.open(IMAGES / name).convert("RGB"))
            answer = runner.run_step(
                PID, 1, cur, guide_frame=guide, step_desc=TRUTH["step_desc"], guide_info=guide_info
            )
            result = answer["execute"]
            assert result["status"] == "OK", result
            assert result["data"]["result_status"] == truth["result_status"], name
            assert sorted(r["label"] for r in result["data"]["defect_rects"]) == truth["missing"]
            assert "phase" not in result["data"]  # answered by the ORIGINAL 0.3.2 adapter
            assert list(worker_dir.iterdir()) == []  # both files removed when the call ended
    assert not worker_dir.exists()
