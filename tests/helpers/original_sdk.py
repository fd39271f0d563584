"""The original SDK's real wheels (procvision-algorithm-sdk 0.0.x on the registry), for tests.

Each wheel is downloaded once with pip into tests/.cache/original-sdk (git-ignored) and reused;
a test skips with the reason only when the registry cannot be reached.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "original-sdk"
_OFFLINE_SIGNS = (
    "NewConnectionError",
    "Max retries exceeded",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "ConnectionError",
    "ProxyError",
    "timed out",
)


def original_sdk_wheel(version: str) -> Path:
    """Path of the original `procvision_algorithm_sdk-<version>` wheel (downloaded if needed)."""
    pattern = f"procvision_algorithm_sdk-{version}-*.whl"
    found = sorted(CACHE.glob(pattern))
    if found:
        return found[0]
    CACHE.mkdir(parents=True, exist_ok=True)
    # Download into a private dir and rename: parallel test processes never see half a wheel.
    with tempfile.TemporaryDirectory(dir=CACHE, prefix=".download-") as tmp:
        command = [
            sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
            "--no-deps", "--only-binary=:all:", "-d", tmp,
            f"procvision-algorithm-sdk=={version}",
        ]  # fmt: skip
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.skip(f"package registry unreachable: pip download of {version} timed out")
        output = (proc.stdout + proc.stderr)[-2000:]
        if proc.returncode != 0:
            if any(sign in output for sign in _OFFLINE_SIGNS):
                pytest.skip(f"package registry unreachable, original SDK {version}: {output}")
            pytest.fail(f"pip download of the original SDK {version} failed: {output}")
        wheel = next(Path(tmp).glob(pattern))
        target = CACHE / wheel.name
        os.replace(wheel, target)
    return target


def extract_original_sdk(version: str, dest: Path) -> Path:
    """Unpack the original SDK wheel into `dest` (a directory to put first on sys.path)."""
    with zipfile.ZipFile(original_sdk_wheel(version)) as archive:
        archive.extractall(dest)
    return dest


def run_with_original_sdk(
    version: str, dest: Path, code: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run Python `code` in a subprocess that imports the ORIGINAL SDK (not ours) first."""
    root = extract_original_sdk(version, dest)
    prelude = (
        f"import sys; sys.path.insert(0, {str(root)!r}); import procvision_algorithm_sdk as _o; "
        f"assert _o.__file__.startswith({str(root)!r}), _o.__file__\n"
    )
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        timeout=120,
        env=full_env,
        cwd=cwd,
    )
