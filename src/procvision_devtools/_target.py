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


# Short names of station platforms and the wheel tag each stands for. Linux means glibc 2.28 or
# newer (Ubuntu 20.04+, Debian 10+, RHEL 8+): numpy and Pillow ship their current wheels for
# manylinux_2_28 only; an older station names its tag (manylinux2014_x86_64) instead.
PLATFORM_ALIASES = {
    "linux_x86_64": "manylinux_2_28_x86_64",
    "linux_aarch64": "manylinux_2_28_aarch64",
    "win_amd64": "win_amd64",
    "win32": "win32",
    "win_arm64": "win_arm64",
    "macos_arm64": "macosx_11_0_arm64",
    "macos_x86_64": "macosx_10_15_x86_64",
}
_WHEEL_PLATFORM = re.compile(
    r"(manylinux(1|2010|2014)_\w+|manylinux_\d+_\d+_\w+|musllinux_\d+_\d+_\w+"
    r"|win32|win_amd64|win_arm64|macosx_\d+_\d+_\w+)"
)


def platform_alias() -> str:
    """The short platform name of this machine's OS and CPU (the default station platform)."""
    machine = platform.machine().lower()
    if sys.platform == "win32":
        return {"arm64": "win_arm64", "x86": "win32", "i686": "win32"}.get(machine, "win_amd64")
    if sys.platform == "darwin":
        return "macos_arm64" if machine == "arm64" else "macos_x86_64"
    return "linux_aarch64" if machine in ("aarch64", "arm64") else "linux_x86_64"


def wheel_platform(name: str) -> str | None:
    """The wheel platform tag for a short name or a tag itself; None when it is neither."""
    name = name.strip()
    if name in PLATFORM_ALIASES:
        return PLATFORM_ALIASES[name]
    return name if _WHEEL_PLATFORM.fullmatch(name) else None


def python_tag(version: str) -> str | None:
    """ "3.10" (or "310") as "3.10"; None unless it is a CPython 3 version."""
    version = version.strip()
    if re.fullmatch(r"3\d{1,2}", version):
        version = f"3.{version[1:]}"
    return version if re.fullmatch(r"3\.\d{1,2}", version) else None


def station_target(wheels_platform: str, python_version: str) -> dict[str, Any]:
    """The `.procvision_env.json` content for a station (CPython)."""
    digits = python_version.replace(".", "")
    return {
        "python_version": python_version,
        "implementation": "cp",
        "abi": f"cp{digits}",
        "wheels_platform": wheels_platform,
    }
