"""The whole dependency closure of a package, resolved by pip from its `wheels/` alone.

`check_requirements` (wheels.py) looks only at the lines of requirements.txt; a wheel whose own
dependency is missing (python-dateutil without six, pandas without tzdata) passes it and fails
the station's `pip install --no-index` minutes later. Here pip's own resolver answers, offline,
for the TARGET interpreter (`--python-version/--platform/--implementation/--abi`), without
installing anything (`--dry-run`). pip is the installer the store uses, so its resolver is the
authority; the message names the missing distribution and who needs it.
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

from .venv import _clean_env
from .wheels import TargetEnv

__all__ = ["RESOLVE_TIMEOUT_S", "check_closure", "check_closure_in_zip", "pip_target_args"]

RESOLVE_TIMEOUT_S = 180.0
# pip: "Could not find a version that satisfies the requirement tzdata>=2022.7 (from pandas)"
_MISSING = re.compile(
    r"Could not find a version that satisfies the requirement (\S+)(?: \(from ([^)]*)\))?"
)


def pip_target_args(target: TargetEnv) -> list[str]:
    """pip options that make it resolve for `target` rather than for this interpreter."""
    args = ["--python-version", target.python_version, "--implementation", target.implementation]
    if target.abi:
        args += ["--abi", target.abi]
    for plat in target.platforms:
        if plat != "any":
            args += ["--platform", plat]
    return args


def check_closure(
    requirements_text: str,
    wheels_dir: Path,
    target: TargetEnv,
    timeout_s: float = RESOLVE_TIMEOUT_S,
) -> list[Problem]:
    """Resolve requirements.txt and every transitive dependency from `wheels_dir` for `target`.

    2004 names each distribution no wheel provides and what requires it; a resolution
    conflict is 2004 with pip's reason. [] when everything installs.
    """
    with tempfile.TemporaryDirectory(prefix="pv-resolve-") as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(requirements_text, encoding="utf-8")
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--quiet",
            "--target",  # pip 23 accepts the target options only with --target
            str(Path(tmp) / "target"),
            "--no-index",
            "--find-links",
            str(wheels_dir),
            "--only-binary=:all:",
            *pip_target_args(target),
            "-r",
            str(req),
        ]
        try:
            proc = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env=_clean_env(),
                stdin=subprocess.DEVNULL,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            where = "wheels/"
            return [Problem(where, WHEELS_MISSING, f"pip did not resolve in {timeout_s:.0f} s")]
        except OSError as exc:
            return [Problem("wheels/", WHEELS_MISSING, f"cannot run pip to resolve: {exc}")]
    if proc.returncode == 0:
        return []
    return _problems(proc.stderr or proc.stdout, target)


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
    code = INCOMPATIBLE_PYTHON if "Requires-Python" in output else WHEELS_MISSING
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
