"""Packages that bundle the ORIGINAL SDK: put the Runner's own SDK in its place at install.

A zip made with the original tools ships `wheels/procvision_algorithm_sdk-0.0.x-*.whl` and pins
it in its requirements. The store installs the Runner's own SDK instead (same distribution
name; our API is a superset of the original's), so the package runs on today's adapter and
shared memory. The wheel of our SDK is written from the files of the SDK this Runner imports
(a pure-Python package), so a station needs no build tools and no network for it.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import procvision_algorithm_sdk
from procvision_algorithm_sdk._version import __version__

SDK_DIST = "procvision_algorithm_sdk"  # the wheel file and import name
SDK_PROJECT = "procvision-algorithm-sdk"
# The SDK's own dependencies, when this interpreter has no metadata for the SDK distribution
# (a development install of the whole checkout); distributions/sdk/pyproject.toml declares them.
_FALLBACK_REQUIRES = ("numpy>=1.23", "Pillow>=9.0")
_SDK_WHEEL = re.compile(r"^procvision_algorithm_sdk-([^-]+)-.+\.whl$", re.IGNORECASE)
_SDK_LINE = re.compile(r"^\s*procvision[-_.]+algorithm[-_.]+sdk\b", re.IGNORECASE)


def bundled_sdk(wheel_names: tuple[str, ...] | list[str]) -> tuple[str, str] | None:
    """(wheel file, version) of an SDK wheel in wheels/ that is not the Runner's own, or None."""
    for name in wheel_names:
        match = _SDK_WHEEL.match(name)
        if match and match.group(1) != __version__:
            return name, match.group(1)
    return None


def _requires() -> list[str]:
    try:
        listed = importlib.metadata.requires(SDK_PROJECT) or []
    except importlib.metadata.PackageNotFoundError:
        return list(_FALLBACK_REQUIRES)
    return [r for r in listed if "extra ==" not in r] or list(_FALLBACK_REQUIRES)


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def runner_sdk_wheel(cache_dir: Path) -> Path:
    """A py3-none-any wheel of the SDK this Runner imports, written once per content digest."""
    package = Path(procvision_algorithm_sdk.__file__).resolve().parent
    files = sorted(
        p
        for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )
    entries = [(f"{SDK_DIST}/{p.relative_to(package).as_posix()}", p.read_bytes()) for p in files]
    dist_info = f"{SDK_DIST}-{__version__}.dist-info"
    metadata = "".join(
        [
            "Metadata-Version: 2.1\n",
            f"Name: {SDK_PROJECT}\n",
            f"Version: {__version__}\n",
            "Summary: ProcVision algorithm SDK (substituted for a bundled original SDK)\n",
            *(f"Requires-Dist: {r}\n" for r in _requires()),
        ]
    )
    wheel_meta = "Wheel-Version: 1.0\nGenerator: procvision-runner\nRoot-Is-Purelib: true\n"
    wheel_meta += "Tag: py3-none-any\n"
    entries += [
        (f"{dist_info}/METADATA", metadata.encode()),
        (f"{dist_info}/WHEEL", wheel_meta.encode()),
        (f"{dist_info}/top_level.txt", f"{SDK_DIST}\n".encode()),
    ]
    digest = hashlib.sha256()
    for name, data in entries:
        digest.update(name.encode() + b"\0" + data + b"\0")
    target_dir = cache_dir / f"{__version__}-{digest.hexdigest()[:16]}"
    wheel = target_dir / f"{SDK_DIST}-{__version__}-py3-none-any.whl"
    if wheel.is_file():
        return wheel
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in entries)
    record += f"{dist_info}/RECORD,,\n"
    target_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".sdk-", suffix=".whl.tmp", dir=target_dir)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in [*entries, (f"{dist_info}/RECORD", record.encode())]:
                archive.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, wheel)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return wheel


def substitute_sdk(work: Path, requirement_files: list[str], bundled: str, ours: Path) -> None:
    """In an unpacked package: swap wheels/<bundled> for our wheel and re-pin the SDK lines."""
    wheels = work / "wheels"
    (wheels / bundled).unlink(missing_ok=True)
    shutil.copyfile(ours, wheels / ours.name)
    ours_line = f"{SDK_PROJECT}=={__version__}"
    for rel in requirement_files:
        path = work / rel
        if not path.is_file():
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        if any("--hash" in line for line in lines):  # pip's hash mode needs every line hashed
            ours_line += f" --hash=sha256:{hashlib.sha256(ours.read_bytes()).hexdigest()}"
        pinned = [ours_line if _SDK_LINE.match(x) else x for x in lines]
        path.write_text("\n".join(pinned) + "\n", encoding="utf-8")


def substitution_note(bundled_version: str) -> str:
    """What list / GET /algorithms show for a substituted package."""
    return f"substituted {bundled_version} -> {__version__}"
