"""Packages that carry the ORIGINAL SDK (0.0.7 from the registry): substituted at install."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers.original_sdk import original_sdk_wheel
from helpers.package_zips import (
    EXAMPLE,
    dependency_wheels,
    make_package_zip,
    requirements_for,
    sdk_wheel,
)
from PIL import Image

from procvision_algorithm_sdk._version import __version__
from procvision_runner import Runner, RunnerConfig, legacy_transport

pytestmark = pytest.mark.slow
NAME = "algorithm-example"


def runner_cli(
    store: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "procvision_runner.cli", "--store", str(store), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, **(env or {})},
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
    names = ("ok_01.png", "ng_missing_2.png")
    images = [a for name in names for a in ("--image", str(EXAMPLE / "images" / name))]
    inspected = runner_cli(
        store, "inspect", "--pid", "p001", "--step", "1", "--step", "2", *images, "--json"
    )  # one worker for both images: each image's two steps, image by image
    assert inspected.returncode == 0, inspected.stderr
    steps = [json.loads(line) for line in inspected.stdout.splitlines()]
    verdicts = [s["execute"]["data"]["result_status"] for s in steps]
    assert verdicts == [truth[name][step] for name in names for step in ("step1", "step2")]


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


MARKER_MAIN = '''
import hashlib
import importlib.metadata

from procvision_algorithm_sdk import BaseAlgorithm, read_image_from_shared_memory


class Marker(BaseAlgorithm):
    """Written against the original SDK: checks inside execute that it sees the exact pixels."""

    def get_info(self):
        return {"name": "marker", "version": "1.0.0", "supported_pids": ["m1"],
                "steps": [{"index": 1, "name": "check", "params": []}]}

    def pre_execute(self, step_index, pid, session, user_params, shared_mem_id, image_meta):
        return {"status": "OK", "message": "ready"}

    def execute(self, step_index, pid, session, user_params, shared_mem_id, image_meta):
        image = read_image_from_shared_memory(shared_mem_id, image_meta)
        seen = hashlib.sha256(image.tobytes()).hexdigest()
        ok = seen == user_params.get("expect")
        data = {"result_status": "OK" if ok else "NG", "defect_rects": [],
                "sdk": importlib.metadata.version("procvision_algorithm_sdk"),
                "shared_mem_id": shared_mem_id}
        if not ok:
            data["ng_reason"] = "marker mismatch"
        return {"status": "OK", "data": data}
'''


def marker_zip(out: Path) -> Path:
    wheels = [*dependency_wheels(), original_sdk_wheel("0.0.7")]
    manifest = {
        "name": "marker",
        "version": "1.0.0",
        "entry_point": "marker_algo.main:Marker",
        "supported_pids": ["m1"],
        "steps": [{"index": 1, "name": "check", "params": []}],
    }
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        archive.writestr("marker_algo/__init__.py", "")
        archive.writestr("marker_algo/main.py", MARKER_MAIN)
        archive.writestr("requirements.txt", requirements_for(wheels))
        for wheel in wheels:
            archive.write(wheel, f"wheels/{wheel.name}")
    return out


def test_keep_bundled_sdk_runs_on_the_legacy_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    store = tmp_path / "store"
    package = marker_zip(tmp_path / "marker.zip")
    env_tmp = {"TMPDIR": str(tmp_path / "tmp")}
    installed = runner_cli(store, "install", str(package), "--keep-bundled-sdk", env=env_tmp)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    (entry,) = json.loads(runner_cli(store, "list", "--json").stdout)["packages"]
    assert (entry["sdk"], entry["transport"]) == ("bundled 0.0.7 (kept)", "files")
    deployed = store / "deployed" / "marker" / "1.0.0"
    frame = np.random.default_rng(7).integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
    expect = hashlib.sha256(frame.tobytes()).hexdigest()
    with Runner(RunnerConfig(workers_per_package=1, warmup_calls=0)) as runner:
        key = runner.load(deployed, python=str(deployed / "venv" / "bin" / "python"),
                          transport="files")  # fmt: skip
        (described,) = runner.packages()
        assert (described["state"], described["transport"]) == ("READY", "files")
        from prometheus_client import generate_latest

        from procvision_runner.metrics import ServiceMetrics

        scraped = generate_latest(ServiceMetrics(runner).registry).decode()
        assert (
            'procvision_package_transport{name="marker",transport="files",version="1.0.0"} 1.0'
            in scraped
        )
        frames_root = legacy_transport.frames_root()
        (worker_dir,) = [d for d in frames_root.iterdir() if d.name.startswith(f"{os.getpid()}-")]
        for _ in range(2):
            result = runner.run_step("m1", 1, frame, user_params={"expect": expect})
            data = result["execute"]["data"]
            assert result["execute"]["status"] == "OK", result
            assert (data["result_status"], data["sdk"]) == ("OK", "0.0.7")
            assert data["shared_mem_id"].startswith("pvf-")
            assert list(worker_dir.iterdir()) == []  # each file removed when its call ended
        wrong = runner.run_step("m1", 1, frame[::-1].copy(), user_params={"expect": expect})
        assert wrong["execute"]["data"]["result_status"] == "NG"
        assert runner.packages()[0]["pids"] == ["m1"] and key.name == "marker"
    assert not worker_dir.exists()  # the directory goes with the worker
    # Through the store: activate and inspect use the same legacy path.
    assert (
        runner_cli(store, "activate", "marker", "1.0.0", "--pid", "m1", env=env_tmp).returncode == 0
    )
    image = tmp_path / "frame.png"
    Image.fromarray(frame).save(image)
    inspected = runner_cli(
        store, "inspect", "--pid", "m1", "--step", "1", "--image", str(image),
        "--params", json.dumps({"expect": expect}), "--json", env=env_tmp,
    )  # fmt: skip
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["execute"]["data"]["result_status"] == "OK"
    assert [p for p in frames_root.rglob("*") if p.is_file()] == []


def test_startup_sweep_removes_a_dead_runners_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    left = legacy_transport.frames_root() / f"{dead}-w1"
    left.mkdir(parents=True)
    (left / "pvf-x.npy").write_bytes(b"x")
    Runner(RunnerConfig(workers_per_package=1, warmup_calls=0)).close()
    assert not left.exists()
