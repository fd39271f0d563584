"""Issue 16 item 9: the store builds a package's venv with uv when present, pip otherwise; both
offline from wheels/ only, with the same installed distributions."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers.package_zips import make_package_zip

from procvision_runner.store import venv
from procvision_runner.store.lock import StoreError

pytestmark = pytest.mark.slow  # every test builds a real venv


def _unpack(zip_path: Path, into: Path) -> Path:
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(into)
    return into


def _installed(vpy: Path) -> list[str]:
    code = (
        "import importlib.metadata as m;"
        "print('\\n'.join(sorted(f\"{d.metadata['Name'].lower()}=={d.version}\""
        " for d in m.distributions() if d.metadata['Name'].lower() not in ('pip', 'setuptools'))))"
    )
    out = subprocess.run([str(vpy), "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_uv_is_found_and_builds_the_same_venv_as_pip(tmp_path: Path) -> None:
    assert venv.find_uv() is not None  # a dependency of the runner distribution
    zip_path = make_package_zip(tmp_path / "p.zip")
    built = {}
    for installer in ("uv", "pip"):
        pkg = _unpack(zip_path, tmp_path / installer)
        vpy, _log = venv.build_venv(pkg, sys.executable, timeout_s=600, installer=installer)
        built[installer] = _installed(vpy)
        ok = subprocess.run(
            [str(vpy), "-c", "import numpy, PIL, procvision_algorithm_sdk"],
            capture_output=True,
            timeout=120,
        )
        assert ok.returncode == 0, ok.stderr
        if installer == "uv":  # hard-linked from a cache of the build's own, removed since
            assert not pkg.with_name(f"{pkg.name}.uv-cache").exists()
            files = [p for p in (pkg / "venv").rglob("*") if p.is_file() and not p.is_symlink()]
            assert len(files) > 100 and all(p.stat().st_nlink == 1 for p in files)
    assert built["uv"] == built["pip"] and any(n.startswith("numpy==") for n in built["uv"])


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_both_installers_refuse_a_missing_wheel_with_2004(tmp_path: Path, installer: str) -> None:
    zip_path = make_package_zip(tmp_path / "p.zip")
    pkg = _unpack(zip_path, tmp_path / "pkg")
    (pkg / "requirements.txt").write_text("pv-not-shipped==1.0\n", encoding="utf-8")
    with pytest.raises(StoreError) as err:
        venv.build_venv(pkg, sys.executable, timeout_s=600, installer=installer)
    assert err.value.error_code == "2004", err.value.message
    assert not pkg.with_name(f"{pkg.name}.uv-cache").exists()  # uv's cache goes on failure too
