"""The two distributions built from this repository: the SDK alone, and the station Runner.

The slow test builds the SDK wheel `procvision-cli package` ships and installs it, with numpy
and Pillow only, into a fresh venv: every SDK module imports there without pulling in a module
of the Runner or the developer tools, the CLI shim names the install that brings the developer
tools, and a real Runner runs the example algorithm with its worker in that venv.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers.package_zips import EXAMPLE, REPO, dependency_wheels, sdk_wheel

from procvision_algorithm_sdk._version import __version__
from procvision_runner import Runner
from procvision_runner.config import RunnerConfig
from procvision_runner.store.venv import find_uv

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SDK_DIST = REPO / "distributions" / "sdk" / "pyproject.toml"
RUNNER_DIST = REPO / "distributions" / "runner" / "pyproject.toml"


def _project(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def test_the_runner_pins_this_sdk_release() -> None:
    deps = _project(RUNNER_DIST)["project"]["dependencies"]
    assert f"procvision-algorithm-sdk=={__version__}" in deps


def test_the_dev_install_has_the_dependencies_of_both_distributions() -> None:
    root = _project(REPO / "pyproject.toml")["project"]
    sdk = _project(SDK_DIST)["project"]
    runner = _project(RUNNER_DIST)["project"]
    station = [d for d in runner["dependencies"] if not d.startswith("procvision-algorithm-sdk")]
    assert sorted(root["dependencies"]) == sorted(sdk["dependencies"] + station)
    assert sorted(root["optional-dependencies"]["http"]) == sorted(
        runner["optional-dependencies"]["http"]
    )
    assert root["scripts"] == runner["scripts"]
    assert sdk.get("scripts") is None  # procvision-cli comes with the Runner's distribution


_PROBE = """
import importlib, json, pkgutil, sys
import procvision_algorithm_sdk as sdk
names = [m.name for m in pkgutil.walk_packages(sdk.__path__, "procvision_algorithm_sdk.")]
# a __main__ module runs its program when imported: it is checked by being run (the adapter)
names = [n for n in names if not n.endswith(".__main__")]
for name in names:
    importlib.import_module(name)
ours = ("procvision_runner", "procvision_devtools")
station = sorted(m for m in sys.modules if m.split(".")[0] in ours)
try:
    from procvision_algorithm_sdk.cli import validate  # noqa: F401
    shim = "imported"
except ImportError as exc:
    shim = str(exc)
print(json.dumps({"modules": names, "station": station, "shim": shim}))
"""


@pytest.fixture(scope="module")
def sdk_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the SDK wheel, numpy and Pillow, and nothing else of ours."""
    venv = tmp_path_factory.mktemp("sdk-venv") / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    wheels = [str(w) for w in (sdk_wheel(), *dependency_wheels())]
    uv = find_uv()
    # As the store builds package venvs: uv (a dependency of the station side) when present,
    # and no .pyc written at install. Compiling all of numpy cost about 5 CPU-s here; the three
    # processes this file starts in the venv compile only the modules they import.
    if uv is not None:
        install = [uv, "pip", "install", "-q", "--python", str(python), "--offline"]
        install += ["--no-index", "--no-deps", *wheels]
    else:
        install = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python"]
        install += [str(python), "install", "-q", "--no-index", "--no-deps", "--no-compile"]
        install += wheels
    subprocess.run(install, check=True, timeout=600)
    return python


@pytest.mark.slow
def test_the_sdk_wheel_holds_the_sdk_alone() -> None:
    with zipfile.ZipFile(sdk_wheel()) as zf:
        tops = {name.split("/")[0] for name in zf.namelist()}
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        requires = [
            line.split(":", 1)[1].strip()
            for line in zf.read(meta).decode().splitlines()
            if line.startswith("Requires-Dist:")
        ]
    assert tops == {"procvision_algorithm_sdk", f"procvision_algorithm_sdk-{__version__}.dist-info"}
    assert sorted(r.split(">")[0].split("=")[0].lower() for r in requires) == ["numpy", "pillow"]


@pytest.mark.slow
def test_every_sdk_module_imports_without_the_station_side(sdk_venv: Path) -> None:
    proc = subprocess.run(
        [str(sdk_venv), "-c", _PROBE], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert "procvision_algorithm_sdk.adapter" in report["modules"]
    assert "procvision_algorithm_sdk.cli" in report["modules"]
    assert report["station"] == []
    assert "pip install procvision-runner" in report["shim"]
    missing = subprocess.run(
        [str(sdk_venv), "-c", "import procvision_runner"], capture_output=True, timeout=60
    )
    assert missing.returncode != 0 and b"No module named 'procvision_runner'" in missing.stderr


@pytest.mark.slow
def test_a_runner_runs_the_example_in_the_sdk_only_venv(
    sdk_venv: Path, example_frame: np.ndarray
) -> None:
    image = example_frame
    config = RunnerConfig(workers_per_package=1)
    with Runner(config) as runner:
        runner.load(EXAMPLE, python=str(sdk_venv))
        result = runner.run_step("p001", 1, image, session_id=f"dist-{uuid.uuid4().hex[:8]}")
    assert result["pre_execute"]["status"] == "OK", result
    assert result["execute"]["status"] == "OK", result
    assert result["execute"]["data"]["result_status"] == "OK", result
