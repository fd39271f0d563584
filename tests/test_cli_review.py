"""procvision-cli: regressions for the defects a review found (one test per defect)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

CLI = Path(sys.executable).parent / "procvision-cli"


def cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed console script."""
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A freshly generated project."""
    target = tmp_path / "proj"
    result = cli("init", "review demo", "-d", str(target))
    assert result.returncode == 0, result.stderr
    return target


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


# ---------------------------------------------------------------------------------------------
# 1. package never ships the signing key or other secrets


def test_package_leaves_out_the_signing_key_and_secrets(project: Path, tmp_path: Path) -> None:
    (project / "requirements.txt").write_text("", encoding="utf-8")
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
