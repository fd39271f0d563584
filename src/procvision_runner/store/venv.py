"""Build a package's venv offline: stdlib `venv`, then pip from `wheels/` only, with deadlines.

A venv embeds absolute paths only in its console scripts (and `pyvenv.cfg`'s informational
`command`); `venv/bin/python` finds its prefix from where it sits, so a venv built in a
temporary directory keeps working after that directory is renamed into place. Hence: always
run `<venv>/bin/python -m ...`, never `<venv>/bin/pip`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from procvision_algorithm_sdk.errors import INSTALL_FAILED, WHEELS_MISSING

from .lock import StoreError

_TAIL = 1500


def venv_python(package_dir: Path) -> Path:
    """Where the interpreter of `<package_dir>/venv` is."""
    if sys.platform == "win32":
        return package_dir / "venv" / "Scripts" / "python.exe"
    return package_dir / "venv" / "bin" / "python"


def _die_with_parent() -> None:
    # A killed install must not leave pip writing into a directory reconcile is removing.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "PYTHON")) and k not in ("VIRTUAL_ENV",)
    }
    env.update(
        PIP_NO_INDEX="1",
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INPUT="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PYTHONNOUSERSITE="1",
    )
    return env


def kill_recorded_groups(pgid_dir: Path) -> list[int]:
    """SIGKILL the process groups an interrupted install recorded (their leader died with it,
    but grandchildren such as ensurepip's pip may still be writing into the store)."""
    killed = []
    for f in sorted(pgid_dir.glob("*.pgid")):
        try:
            pgid = int(f.read_text().strip())
            os.killpg(pgid, signal.SIGKILL)
            killed.append(pgid)
        except (ValueError, OSError):
            pass
        f.unlink(missing_ok=True)
    return killed


def _run(cmd: list[str], cwd: Path, deadline: float, what: str, pgid_dir: Path | None) -> str:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise StoreError(INSTALL_FAILED, f"{what}: install deadline passed")
    linux = sys.platform.startswith("linux")
    try:
        child = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # one group to kill, grandchildren included
            preexec_fn=_die_with_parent if linux else None,
        )
    except OSError as exc:
        raise StoreError(INSTALL_FAILED, f"{what} could not start: {exc}") from exc
    record = pgid_dir / f"{child.pid}.pgid" if pgid_dir is not None else None
    try:
        if record is not None:
            record.write_text(str(child.pid))
        try:
            out, _ = child.communicate(timeout=remaining)
        except subprocess.TimeoutExpired as exc:
            raise StoreError(INSTALL_FAILED, f"{what} did not finish in time") from exc
    finally:
        with contextlib.suppress(OSError):
            # the group outlives its leader when a grandchild lingers: none may survive a step
            os.killpg(child.pid, signal.SIGKILL)
        if child.returncode is None:
            child.kill()
            child.wait()
        if record is not None:
            record.unlink(missing_ok=True)
    if child.returncode != 0:
        out = out or ""
        code = WHEELS_MISSING if "No matching distribution" in out else INSTALL_FAILED
        raise StoreError(code, f"{what} failed (exit {child.returncode}): {out[-_TAIL:].strip()}")
    return out or ""


def build_venv(
    package_dir: Path, python: str, timeout_s: float = 900.0, pgid_dir: Path | None = None
) -> tuple[Path, str]:
    """Create `<package_dir>/venv` with `python` and install requirements.txt from wheels/ only.

    Returns (venv python, pip's output). StoreError 2004 when pip finds no matching wheel
    (a transitive dependency missing from wheels/), 2005 for any other failure or the deadline.
    """
    deadline = time.monotonic() + timeout_s
    venv_dir = package_dir / "venv"
    _run(
        [python, "-m", "venv", str(venv_dir)], package_dir, deadline, "creating the venv", pgid_dir
    )
    vpy = venv_python(package_dir)
    log = _run(
        [
            str(vpy),
            "-m",
            "pip",
            "install",
            "--no-index",
            "--find-links",
            str(package_dir / "wheels"),
            "--only-binary",
            ":all:",
            "--no-compile",
            "--no-cache-dir",
            "-r",
            str(package_dir / "requirements.txt"),
        ],
        package_dir,
        deadline,
        "pip install from wheels/",
        pgid_dir,
    )
    return vpy, log
