"""The whole dependency closure of a package, resolved from its `wheels/` alone.

`check_requirements` (wheels.py) looks only at the lines of requirements.txt; a wheel whose own
dependency is missing (python-dateutil without six, pandas without tzdata) passes it and fails
the station's `pip install --no-index` minutes later. Here a real resolver answers, offline,
for the TARGET interpreter, without installing anything (`--dry-run`): uv's when it is installed
and can spell the target (closure_uv.py; about a tenth of pip's CPU), as the store's venv build
prefers uv; pip's otherwise (`--python-version/--platform/--implementation/--abi`). Both give the
same verdicts and codes; the message names the missing distribution and who needs it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from procvision_algorithm_sdk.contract import Problem
from procvision_algorithm_sdk.errors import INCOMPATIBLE_PYTHON, WHEELS_MISSING

from .closure_uv import uv_command, uv_platform, uv_problems
from .venv import _clean_env, find_uv
from .wheels import TargetEnv

__all__ = [
    "RESOLVE_TIMEOUT_S",
    "check_closure",
    "check_closure_in_zip",
    "pip_target_args",
    "resolver_for",
]

RESOLVE_TIMEOUT_S = 180.0
# pip: "Could not find a version that satisfies the requirement tzdata>=2022.7 (from pandas)"
# (a requirement of requirements.txt itself is followed by "(from versions: ...)" instead)
_MISSING = re.compile(
    r"Could not find a version that satisfies the requirement (\S+)"
    r"(?: \(from (?!versions:)([^)]*)\))?"
)
# pip names a wheel whose Requires-Python refuses the target either way
_WRONG_PYTHON = re.compile(r"Requires-Python|requires a different Python")


def pip_target_args(target: TargetEnv) -> list[str]:
    """pip options that make it resolve for `target` rather than for this interpreter."""
    args = ["--python-version", target.python_version, "--implementation", target.implementation]
    if target.abi:
        args += ["--abi", target.abi]
    for plat in target.platforms:
        if plat != "any":
            args += ["--platform", plat]
    return args


def resolver_for(target: TargetEnv, choice: str | None = None) -> tuple[str, str | None]:
    """("uv", its binary) or ("pip", None): uv when found and able to spell `target`.

    `choice` "pip" or "uv" forces one (ValueError when uv is asked for and cannot be used);
    None picks uv whenever it can (PROCVISION_INSTALLER=pip keeps pip, as for venvs).
    """
    if choice not in (None, "uv", "pip"):
        raise ValueError(f"resolver must be 'uv' or 'pip', not {choice!r}")
    uv = find_uv() if choice != "pip" else None
    if uv is not None and uv_platform(target) is not None:
        return "uv", uv
    if choice == "uv":
        why = "uv is not installed" if uv is None else f"uv cannot spell {target.describe()}"
        raise ValueError(why)
    return "pip", None


def check_closure(
    requirements_text: str,
    wheels_dir: Path,
    target: TargetEnv,
    timeout_s: float = RESOLVE_TIMEOUT_S,
    resolver: str | None = None,
) -> list[Problem]:
    """Resolve requirements.txt and every transitive dependency from `wheels_dir` for `target`.

    2004 names each distribution no wheel provides and what requires it; a resolution
    conflict is 2004 with the resolver's reason; 2003 when a wheel refuses the target's Python.
    [] when everything installs. `resolver`: see `resolver_for` (None: uv when it can).
    """
    name, uv = resolver_for(target, resolver)
    with tempfile.TemporaryDirectory(prefix="pv-resolve-") as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(requirements_text, encoding="utf-8")
        if uv is not None:
            command = uv_command(uv, req, wheels_dir, target)
        else:
            command = _pip_command(req, wheels_dir, target)
        try:
            proc = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env={**_clean_env(), "NO_COLOR": "1"},
                stdin=subprocess.DEVNULL,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            where = "wheels/"
            return [Problem(where, WHEELS_MISSING, f"{name} did not resolve in {timeout_s:.0f} s")]
        except OSError as exc:
            return [Problem("wheels/", WHEELS_MISSING, f"cannot run {name} to resolve: {exc}")]
    if proc.returncode == 0:
        return []
    output = proc.stderr or proc.stdout
    return uv_problems(output, target) if uv is not None else _problems(output, target)


def _pip_command(req: Path, wheels_dir: Path, target: TargetEnv) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--quiet",
        "--target",  # pip 23 accepts the target options only with --target
        str(req.parent / "target"),
        "--no-index",
        "--find-links",
        str(wheels_dir),
        "--only-binary=:all:",
        *pip_target_args(target),
        "-r",
        str(req),
    ]


def _problems(output: str, target: TargetEnv) -> list[Problem]:
    problems = []
    for match in _MISSING.finditer(output):
        wanted, needed_by = match.group(1), match.group(2)
        who = f"needed by {needed_by}" if needed_by else "named in requirements.txt"
        problems.append(
            Problem(
                f"wheels/{wanted}",
                WHEELS_MISSING,
                f"no wheel in wheels/ provides {wanted} ({who}) for {target.describe()}",
            )
        )
    if problems:
        return problems
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    tail = " ".join(lines[-4:])[-600:] or "pip could not resolve the requirements"
    code = INCOMPATIBLE_PYTHON if _WRONG_PYTHON.search(output) else WHEELS_MISSING
    return [Problem("wheels/", code, f"the dependencies do not resolve from wheels/: {tail}")]


def check_closure_in_zip(
    zip_path: str | Path,
    members: dict[str, str],
    wheels: Iterable[str],
    requirements_text: str,
    target: TargetEnv,
) -> list[Problem]:
    """`check_closure` for a zip: its wheels/ (already checked by check_zip) in a temp dir."""
    with tempfile.TemporaryDirectory(prefix="pv-wheels-") as tmp:
        out = Path(tmp)
        with zipfile.ZipFile(zip_path) as zf:
            for name in wheels:
                base = PurePosixPath(name).name  # check_zip vetted it; a bare name only
                inner = members.get(f"wheels/{base}")
                if inner is None or base != name:
                    continue
                with zf.open(inner) as src, open(out / base, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        return check_closure(requirements_text, out, target)
