"""The target environment of a package: python version, implementation, ABI, wheel platform."""

from __future__ import annotations

import platform
import re
import sys
import sysconfig
from typing import Any


def current_platform_tag() -> str:
    """Return a wheel platform tag for this machine (pip expands manylinux tags downwards)."""
    machine = platform.machine().lower() or "x86_64"
    if sys.platform.startswith("linux"):
        arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
        libc, version = platform.libc_ver()
        if libc == "glibc" and version:
            major, _, rest = version.partition(".")
            minor = rest.split(".")[0] or "0"
            return f"manylinux_{major}_{minor}_{arch}"
        return f"musllinux_1_2_{arch}" if libc != "glibc" else f"manylinux2014_{arch}"
    if sys.platform == "win32":
        return {"amd64": "win_amd64", "x86_64": "win_amd64", "arm64": "win_arm64"}.get(
            machine, "win32"
        )
    if sys.platform == "darwin":
        release = platform.mac_ver()[0] or "11.0"
        major = release.split(".")[0]
        minor = "0" if int(major) >= 11 else release.split(".")[1]
        return f"macosx_{major}_{minor}_{'arm64' if machine == 'arm64' else 'x86_64'}"
    return sysconfig.get_platform().replace("-", "_").replace(".", "_")


def current_target() -> dict[str, Any]:
    """Return the `.procvision_env.json` content describing this interpreter."""
    major, minor = sys.version_info[:2]
    impl = "cp" if sys.implementation.name == "cpython" else sys.implementation.name[:2]
    return {
        "python_version": f"{major}.{minor}",
        "implementation": impl,
        "abi": f"{impl}{major}{minor}",
        "wheels_platform": current_platform_tag(),
    }


_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def expand_platforms(tag: str) -> list[str]:
    """Return `tag` and every older manylinux/musllinux tag a machine of that level accepts.

    pip's `--platform` and a wheel's tags match exactly; a manylinux_2_36 machine also runs
    manylinux_2_17 (manylinux2014) wheels, so a target names the whole ladder.
    """
    legacy = re.fullmatch(r"(manylinux1|manylinux2010|manylinux2014)_(.+)", tag)
    if legacy:
        major, minor = _LEGACY_MANYLINUX[legacy.group(1)]
        arch = legacy.group(2)
    else:
        match = re.fullmatch(r"(manylinux|musllinux)_(\d+)_(\d+)_(.+)", tag)
        if not match:
            return [tag]
        if match.group(1) == "musllinux":
            arch = match.group(4)
            top = int(match.group(3))
            return [f"musllinux_{match.group(2)}_{m}_{arch}" for m in range(top, -1, -1)]
        major, minor, arch = int(match.group(2)), int(match.group(3)), match.group(4)
    if major != 2:
        return [tag]
    lowest = 5 if arch in ("x86_64", "i686") else 17
    out: list[str] = []
    for m in range(minor, lowest - 1, -1):
        out.append(f"manylinux_2_{m}_{arch}")
        for name, (_, legacy_minor) in _LEGACY_MANYLINUX.items():
            if legacy_minor == m:
                out.append(f"{name}_{arch}")
    return out or [tag]
