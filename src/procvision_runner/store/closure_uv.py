"""The dependency-closure check on uv's resolver: the target as uv spells it, and its refusals.

uv answers the same question as pip (`pip install --dry-run` over wheels/ alone, for the target
interpreter) in about a tenth of pip's CPU, so `closure.check_closure` asks uv when it is
installed and uv can express the target. uv has no `--abi`/`--implementation`, and its
`--python-platform` is one of a fixed list of triples, so a target uv cannot spell exactly
(another implementation or ABI, macOS, musl, a manylinux level uv does not list, a platform list
without its plain `linux_<arch>` tag) is left to pip: `uv_platform` returns None for it. uv's
refusals are read into the same problems as pip's: a missing or wrong-platform wheel is 2004
naming the distribution and who needs it, a Python the wheels refuse is 2003, anything else
(a conflict) is 2004 with uv's own explanation.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from procvision_algorithm_sdk.contract import Problem
from procvision_algorithm_sdk.errors import INCOMPATIBLE_PYTHON, WHEELS_MISSING

from .wheels import TargetEnv

__all__ = ["uv_command", "uv_platform", "uv_problems"]

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
    if len(arches) != 1 or not levels:
        return None
    arch = arches.pop()
    # uv's manylinux triples accept linux_<arch> wheels as well: only when the target does too
    if f"linux_{arch}" not in platforms or max(levels) not in _UV_MANYLINUX:
        return None
    return f"{arch}-manylinux_2_{max(levels)}"


def uv_command(uv: str, requirements: Path, wheels_dir: Path, target: TargetEnv) -> list[str]:
    """`uv pip install --dry-run` over wheels/ alone, for `target`, offline, wheels only."""
    platform = uv_platform(target)
    if platform is None:
        raise ValueError(f"uv cannot resolve for {target.describe()}")
    command = [uv, "pip", "install", "--dry-run", "--quiet", "--python", sys.executable]
    # --target: resolve for an empty directory, not for what this interpreter has installed
    command += ["--target", str(requirements.parent / "target"), "--offline", "--no-config"]
    command += ["--no-cache", "--no-index", "--find-links", str(wheels_dir)]
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
