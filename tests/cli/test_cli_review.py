"""procvision-cli: regressions for the defects a review found (one test per defect)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

CLI = Path(sys.executable).parent / "procvision-cli"
REPO = Path(__file__).resolve().parents[2]


def cli(
    *args: str, cwd: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the installed console script."""
    return subprocess.run(
        [str(CLI), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project `init` generated once per module (only copied)."""
    target = tmp_path_factory.mktemp("generated") / "proj"
    result = cli("init", "review demo", "-d", str(target))
    assert result.returncode == 0, result.stderr
    return target


@pytest.fixture
def project(generated: Path, tmp_path: Path) -> Path:
    """A freshly generated project of its own (a copy: init writes no path into its files)."""
    return Path(shutil.copytree(generated, tmp_path / "proj"))


def _write_ed25519_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _ship_dependency_wheels(project: Path) -> None:
    """Put numpy and Pillow wheels into <project>/wheels, for `package -s`."""
    from helpers.package_zips import dependency_wheels

    (project / "wheels").mkdir(exist_ok=True)
    for wheel in dependency_wheels():
        shutil.copyfile(wheel, project / "wheels" / wheel.name)


# ---------------------------------------------------------------------------------------------
# 1. package never ships the signing key or other secrets


@pytest.mark.slow
def test_package_leaves_out_the_signing_key_and_secrets(project: Path, tmp_path: Path) -> None:
    _ship_dependency_wheels(project)
    _write_ed25519_key(project / "signing.pem")
    (project / "keys").mkdir()
    _write_ed25519_key(project / "keys" / "station-signer.txt")  # the key under any name
    (project / ".env").write_text("SECRET=1\n", encoding="utf-8")
    (project / ".env.production").write_text("SECRET=2\n", encoding="utf-8")
    (project / "tls.key").write_text("k\n", encoding="utf-8")
    (project / "id_rsa").write_text("k\n", encoding="utf-8")
    (project / "id_rsa.pub").write_text("k\n", encoding="utf-8")
    (project / "config").mkdir()
    (project / "config" / "cert.pem").write_text("k\n", encoding="utf-8")
    (project / "config" / "settings.env.json").write_text("{}\n", encoding="utf-8")
    out = tmp_path / "signed.zip"
    secrets = {
        "signing.pem",
        ".env",
        ".env.production",
        "tls.key",
        "id_rsa",
        "id_rsa.pub",
        "config/cert.pem",
    }
    for key in (project / "signing.pem", project / "keys" / "station-signer.txt"):
        result = cli("package", str(project), "-s", "--sign", str(key), "-o", str(out), "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        summary = json.loads(result.stdout)
        with zipfile.ZipFile(out) as zf:
            names = zf.namelist()
        key_name = key.relative_to(project).as_posix()
        assert (secrets | {key_name}).isdisjoint(names), names
        assert "config/settings.env.json" in names and "SIGNATURE" in names
        notes = " ".join(summary["notes"])
        assert all(name in notes for name in secrets | {key_name}), notes
        checked = cli("validate", "--zip", str(out), "--json")
        assert checked.returncode == 0, checked.stdout


# ---------------------------------------------------------------------------------------------
# 2. package -s refuses wheels/ that cannot install the package


@pytest.mark.slow
def test_package_skip_download_refuses_missing_wheels(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.zip"
    # requirements.txt wants numpy, <project>/wheels is empty: validate --zip would say 2004
    missing = cli("package", str(project), "-s", "-o", str(out), "--json")
    assert missing.returncode == 1, missing.stdout
    error = json.loads(missing.stdout)
    assert error["error_code"] == "2004" and "no wheel for numpy" in error["message"]
    assert not out.exists()
    # the SDK's own dependencies count too: the store's pip install needs them offline
    (project / "requirements.txt").write_text("", encoding="utf-8")
    sdk_only = cli("package", str(project), "-s", "-o", str(out))
    assert sdk_only.returncode == 1 and "error 2004: " in sdk_only.stderr
    assert "pillow" in sdk_only.stderr.lower() and "procvision-algorithm-sdk" in sdk_only.stderr
    assert not out.exists()
    # with the wheels in place the same command succeeds and validate --zip agrees
    (project / "requirements.txt").write_text("numpy>=1.23\n", encoding="utf-8")
    _ship_dependency_wheels(project)
    ok = cli("package", str(project), "-s", "-o", str(out), "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert len(json.loads(ok.stdout)["wheels"]) == 3
    checked = cli("validate", "--zip", str(out), "--json")
    assert checked.returncode == 0, checked.stdout


# ---------------------------------------------------------------------------------------------
# 3. quick validate with a virtual environment inside the project


def _fake_venv(project: Path) -> Path:
    """A venv inside the project: pyvenv.cfg and a site-packages holding the SDK and a helper."""
    venv = project / ".venv"
    site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    site.mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = {Path(sys.executable).parent}\n", encoding="utf-8")
    shutil.copytree(
        REPO / "src" / "procvision_algorithm_sdk",
        site / "procvision_algorithm_sdk",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (site / "venvhelper.py").write_text("LOADED = True\n", encoding="utf-8")
    main = next(project.glob("*/main.py"))
    main.write_text(
        main.read_text(encoding="utf-8")
        + "\nimport sys\nimport venvhelper  # noqa: F401\nimport procvision_algorithm_sdk as _sdk\n"
        "print('SDK FROM', _sdk.__file__, file=sys.stderr)\n",
        encoding="utf-8",
    )
    return site


@pytest.mark.slow
def test_quick_validate_keeps_modules_of_a_venv_inside_the_project(
    project: Path, tmp_path: Path
) -> None:
    site = _fake_venv(project)
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "procvision_algorithm_sdk.cli", "validate", str(project), "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    assert f"SDK FROM {site}" in result.stderr  # the CLI and the algorithm use the venv's SDK
    report = json.loads(result.stdout)
    assert result.returncode == 0, [c for c in report["checks"] if c["result"] == "FAIL"]


def test_purge_drops_project_code_only(project: Path) -> None:
    from procvision_devtools._loader import purge_modules

    site = _fake_venv(project)
    (project / "dist-packages").mkdir()
    (project / "dist-packages" / "distthing.py").write_text("", encoding="utf-8")
    (project / "loose.py").write_text("", encoding="utf-8")
    sys.path[:0] = [str(site), str(project / "dist-packages"), str(project)]
    try:
        import distthing  # noqa: F401
        import loose  # noqa: F401
        import venvhelper  # noqa: F401

        purge_modules(project, None)
        assert "venvhelper" in sys.modules and "distthing" in sys.modules
        assert "loose" not in sys.modules
    finally:
        for path in (str(site), str(project / "dist-packages"), str(project)):
            sys.path.remove(path)
        for name in ("venvhelper", "distthing", "loose"):
            sys.modules.pop(name, None)


# ---------------------------------------------------------------------------------------------
# 4. validate --full names a non-BaseAlgorithm entry class


def test_full_validate_reports_a_plain_entry_class(tmp_path: Path) -> None:
    from algos.cli.broken import write_project

    from procvision_devtools import validate

    plain = write_project(tmp_path / "plain", base="object")
    report = validate(plain, full=True)
    fails = [c for c in report["checks"] if c["result"] == "FAIL"]
    assert report["summary"]["status"] == "FAIL"
    assert [(c["name"], c.get("code")) for c in fails] == [("BaseAlgorithm subclass", "2002")]
    assert "must subclass" in fails[0]["message"] and "BaseAlgorithm" in fails[0]["message"]
    # the hook-counting shim no longer breaks a class without hooks: every step ran
    passed = {c["name"] for c in report["checks"] if c["result"] == "PASS"}
    assert {"setup", "step 1 execute", "stdout clean", "worker exit"} <= passed
    assert not any("AttributeError" in c["message"] for c in report["checks"])
    clean = validate(write_project(tmp_path / "clean"), full=True)
    assert clean["summary"]["status"] == "PASS"
    assert "BaseAlgorithm subclass" in {c["name"] for c in clean["checks"]}


# ---------------------------------------------------------------------------------------------
# 5. init into a place the filesystem refuses: one error line, no traceback


def test_init_into_a_file_or_below_a_file_is_a_clean_error(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a directory\n", encoding="utf-8")
    for target in (afile, afile / "sub"):
        result = cli("init", "x", "-d", str(target))
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith("error 9999: "), result.stderr
        assert "Traceback" not in result.stderr and str(target) in result.stderr
        assert result.stdout == ""
    assert afile.read_text(encoding="utf-8") == "not a directory\n"


# ---------------------------------------------------------------------------------------------
# 6. quick validate --json: low-level writes to fd 1 never reach stdout

NOISY = """\
import ctypes
import os

from procvision_algorithm_sdk import BaseAlgorithm

os.write(1, b"POLLUTE at import\\n")
_LIBC = ctypes.CDLL(None)


class Noisy(BaseAlgorithm):
    def __init__(self):
        super().__init__()
        os.write(1, b"POLLUTE in __init__\\n")
        _LIBC.printf(b"C POLLUTE in __init__\\n")  # buffered by C stdio, flushed later

    def get_info(self):
        return {
            "name": "noisy",
            "version": "1.0.0",
            "supported_pids": ["p1"],
            "steps": [{"index": 1, "name": "inspect", "params": []}],
        }

    def pre_execute(self, step_index, pid, session, user_params, shared_mem_id, image_meta):
        return {"status": "OK", "message": "ready", "data": {}}

    def execute(self, step_index, pid, session, user_params, shared_mem_id, image_meta):
        os.write(1, b"POLLUTE in execute\\n")
        print("plain print in execute")
        return {"status": "OK", "data": {"result_status": "OK", "defect_rects": []}}

    def teardown(self):
        _LIBC.printf(b"C POLLUTE in teardown\\n")  # still in the C buffer when validate ends
"""


def test_quick_validate_json_survives_writes_to_fd_1(tmp_path: Path) -> None:
    root = tmp_path / "noisy"
    (root / "noisy_algo").mkdir(parents=True)
    (root / "noisy_algo" / "__init__.py").write_text("", encoding="utf-8")
    (root / "noisy_algo" / "main.py").write_text(NOISY, encoding="utf-8")
    manifest = {
        "name": "noisy",
        "version": "1.0.0",
        "entry_point": "noisy_algo.main:Noisy",
        "supported_pids": ["p1"],
    }
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    # PYTHONUNBUFFERED would make C stdio unbuffered too; the point is the buffered case
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    result = cli("validate", str(root), "--json", env=env)
    report = json.loads(result.stdout)  # nothing but the report on stdout
    assert result.returncode == 0, report
    assert report["summary"]["status"] == "PASS"
    noises = ("at import", "in __init__", "C POLLUTE in __init__", "in execute", "plain print")
    for noise in (*noises, "C POLLUTE in teardown"):
        assert noise in result.stderr
