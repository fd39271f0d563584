"""The dependency-closure check on uv's resolver: the target as uv spells it, and its refusals.

uv answers the same question as pip (`pip install --dry-run` over wheels/ alone, for the target
interpreter) in about a tenth of pip's CPU, so `closure.check_closure` asks uv when it is
installed and uv can express the target. uv has no `--abi`/`--implementation`, and its
`--python-platform` is one of a fixed list of triples, so a target uv cannot spell exactly
(another implementation or ABI, macOS, musl, a manylinux level uv does not list) is left to
pip: `uv_platform` returns None for it. uv's manylinux triples also take plain `linux_<arch>`
wheels; for a target that refuses those (what `package` writes for a glibc station: the
manylinux ladder alone), uv is shown wheels/ without them (`wheels_for_uv`). uv's
refusals are read into the same problems as pip's: a missing or wrong-platform wheel is 2004
naming the distribution and who needs it, a Python the wheels refuse is 2003, anything else
(a conflict) is 2004 with uv's own explanation.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from procvision_algorithm_sdk.contract import Problem
from procvision_algorithm_sdk.errors import INCOMPATIBLE_PYTHON, WHEELS_MISSING

from .wheels import TargetEnv

__all__ = ["uv_command", "uv_platform", "uv_problems", "wheels_for_uv"]

# The manylinux levels uv's --python-platform offers (x86_64-manylinux_2_17 ... _2_40).
_UV_MANYLINUX = {17, *range(28, 41)}
_UV_WINDOWS = {"win_amd64": "x86_64-pc-windows-msvc", "win32": "i686-pc-windows-msvc"}
_UV_WINDOWS["win_arm64"] = "aarch64-pc-windows-msvc"
_LEGACY_MANYLINUX = {"manylinux1": 5, "manylinux2010": 12, "manylinux2014": 17}
_MANYLINUX = re.compile(r"manylinux_2_(\d+)_(x86_64|aarch64)")
_LEGACY = re.compile(r"(manylinux1|manylinux2010|manylinux2014)_(x86_64|aarch64)")


def uv_platform(target: TargetEnv) -> str | None:
    """uv's `--python-platform` for `target` ("" for this machine), or None: pip must resolve."""
    major, minor = target.python_version.split(".")[:2]
    if target.implementation != "cp" or target.abi not in (None, f"cp{major}{minor}"):
        return None
    platforms = {p for p in target.platforms if p != "any"}
    if not platforms:
        return ""  # pip, too, resolves for this machine then
    if len(platforms) == 1 and next(iter(platforms)) in _UV_WINDOWS:
        return _UV_WINDOWS[next(iter(platforms))]
    levels: set[int] = set()
    arches: set[str] = set()
    for plat in platforms:
        new, old = _MANYLINUX.fullmatch(plat), _LEGACY.fullmatch(plat)
        if new:
            levels.add(int(new.group(1)))
            arches.add(new.group(2))
        elif old:
            levels.add(_LEGACY_MANYLINUX[old.group(1)])
            arches.add(old.group(2))
        elif plat.startswith("linux_"):
            arches.add(plat.removeprefix("linux_"))
        else:
            return None
    if len(arches) != 1 or not levels or max(levels) not in _UV_MANYLINUX:
        return None
    return f"{arches.pop()}-manylinux_2_{max(levels)}"


def _plain_linux_only(wheel: Path) -> bool:
    """True for a wheel whose every platform tag is a plain `linux_<arch>` (no manylinux)."""
    try:
        tags = parse_wheel_filename(wheel.name)[3]
    except InvalidWheelFilename:
        return False  # uv refuses it as pip does
    return bool(tags) and all(t.platform.startswith("linux_") for t in tags)


def _link(src: Path, dst: Path) -> None:
    # a hard link where the temp dir shares the file system, else a symlink, else a copy
    for make in (os.link, os.symlink):
        try:
            make(src, dst)
            return
        except OSError:
            continue
    shutil.copyfile(src, dst)


def wheels_for_uv(wheels_dir: Path, target: TargetEnv, scratch: Path) -> Path:
    """wheels/ as uv must see it for `target`: no plain `linux_<arch>` wheel if it refuses them.

    uv's manylinux triples take `linux_<arch>` wheels too, which pip refuses for a target that
    lists only manylinux tags; those wheels are left out of a view made in `scratch`, so uv
    reports them as missing, as pip does.
    """
    refuses = any(p.startswith("manylinux") for p in target.platforms) and not any(
        p.startswith("linux_") for p in target.platforms
    )
    wheels = sorted(wheels_dir.glob("*.whl")) if refuses else []
    if not any(_plain_linux_only(w) for w in wheels):
        return wheels_dir
    scratch.mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        if not _plain_linux_only(wheel):
            _link(wheel, scratch / wheel.name)
    return scratch


def uv_command(uv: str, requirements: Path, wheels_dir: Path, target: TargetEnv) -> list[str]:
    """`uv pip install --dry-run` over wheels/ alone, for `target`, offline, wheels only."""
    platform = uv_platform(target)
    if platform is None:
        raise ValueError(f"uv cannot resolve for {target.describe()}")
    command = [uv, "pip", "install", "--dry-run", "--quiet", "--python", sys.executable]
    # --target: resolve for an empty directory, not for what this interpreter has installed
    command += ["--target", str(requirements.parent / "target"), "--offline", "--no-config"]
    wheels = wheels_for_uv(wheels_dir, target, requirements.parent / "wheels-for-uv")
    command += ["--no-cache", "--no-index", "--find-links", str(wheels)]
    command += ["--only-binary", ":all:", "--python-version", target.python_version]
    if platform:
        command += ["--python-platform", platform]
    return [*command, "-r", str(requirements)]


_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_SPEC = r"(?:[<>=!~]=?[^\s,]+)"
_NOT_FOUND = re.compile(rf"({_NAME}) was not found in the provided package locations")
_ONLY = re.compile(rf"only (?:the following versions of )?({_NAME})(?:{_SPEC})? (?:is|are) avail")
_NO_WHEEL = re.compile(rf"({_NAME})(?:{_SPEC})? has no wheels with a matching ([\w ]+?) tag")
_PYTHON = re.compile(r"requires Python|does not satisfy Python")


def _needed_by(text: str, wanted: str) -> tuple[str, str]:
    """(the requirement as written, who asks for it) for a distribution uv names."""
    name = re.escape(wanted)
    dep = re.search(
        rf"(?:all versions of )?({_NAME})(?:{_SPEC})? depends? on {name}({_SPEC})?", text
    )
    if dep:
        return wanted + (dep.group(2) or ""), f"needed by {dep.group(1)}"
    direct = re.search(rf"you require {name}({_SPEC})?", text)
    return wanted + ((direct.group(1) or "") if direct else ""), "named in requirements.txt"


def uv_problems(output: str, target: TargetEnv) -> list[Problem]:
    """uv's refusal as the problems pip's would have been (2004 missing, 2003 Python)."""
    text = " ".join(output.split())
    problems: list[Problem] = []
    seen: set[str] = set()
    for pattern in (_NO_WHEEL, _NOT_FOUND, _ONLY):  # the platform reason first: it says most
        for match in pattern.finditer(text):
            wanted = match.group(1)
            if wanted in seen:
                continue
            seen.add(wanted)
            requirement, who = _needed_by(text, wanted)
            if pattern is _NO_WHEEL:
                who += f"; its wheels have no matching {match.group(2)} tag"
            problems.append(
                Problem(
                    f"wheels/{requirement}",
                    WHEELS_MISSING,
                    f"no wheel in wheels/ provides {requirement} ({who}) for {target.describe()}",
                )
            )
    if problems and not _PYTHON.search(text):
        return problems
    start = text.find("Because")
    tail = (text[start:] if start >= 0 else text)[-600:] or "uv could not resolve the requirements"
    code = INCOMPATIBLE_PYTHON if _PYTHON.search(text) else WHEELS_MISSING
    return [Problem("wheels/", code, f"the dependencies do not resolve from wheels/: {tail}")]
