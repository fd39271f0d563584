"""Build a package's venv offline: uv (else `venv` and our pip), from `wheels/` only, in time.

A venv embeds absolute paths only in its console scripts (and `pyvenv.cfg`'s informational
`command`); `venv/bin/python` finds its prefix from where it sits, so a venv built in a
temporary directory keeps working after that directory is renamed into place. Hence: always
run `<venv>/bin/python -m ...`, never `<venv>/bin/pip`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from procvision_algorithm_sdk.errors import INSTALL_FAILED, WHEELS_MISSING

from .lock import StoreError

_TAIL = 1500
# uv unpacks the wheels into a cache of this build's own beside the package directory (the
# venv's file system; beside, not inside, so no zip entry can pose as it) and hard-links the
# venv's files to it: no second copy of every file is written, and removing the cache
# afterwards leaves the venv sharing nothing. In the store it is named like the build directory
# (`.tmp-...`), so a reconcile removes what a killed install left of it.
_UV_CACHE_SUFFIX = ".uv-cache"


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
        if not k.startswith(("PIP_", "PYTHON", "UV_")) and k not in ("VIRTUAL_ENV",)
    }
    env.update(
        UV_NO_CONFIG="1",
        UV_OFFLINE="1",
        PIP_NO_INDEX="1",
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INPUT="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PYTHONNOUSERSITE="1",
    )
    return env


_PROC = Path("/proc")


def boot_id() -> str | None:
    """This boot's id (Linux), or None where /proc does not tell."""
    try:
        return (_PROC / "sys" / "kernel" / "random" / "boot_id").read_text().strip() or None
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(process group, start time in clock ticks since boot) of a pid, from /proc/<pid>/stat."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and ')': fields are counted after the last ')'
    rest = text[text.rfind(")") + 2 :].split()
    try:
        return int(rest[2]), int(rest[19])  # fields 5 (pgrp) and 22 (starttime)
    except (IndexError, ValueError):
        return None


def _proc_cwd(pid: int) -> str | None:
    try:
        return os.readlink(_PROC / str(pid) / "cwd").removesuffix(" (deleted)")
    except OSError:
        return None


def record_group(pgid_dir: Path, leader: int, cwd: Path) -> Path | None:
    """Note a step's process group so a later reconcile can kill what a crash left of it.

    The record names the leader's start time and the boot, so a reboot or a reused pid never
    makes reconcile kill a group that is not ours; None when /proc cannot tell them.
    """
    boot = boot_id()
    stat_ = _proc_stat(leader)
    if boot is None or stat_ is None or stat_[0] != leader:
        return None
    record = pgid_dir / f"{leader}.pgid"
    doc = {"pgid": leader, "start": stat_[1], "boot_id": boot, "cwd": os.path.realpath(cwd)}
    record.write_text(json.dumps(doc))
    return record


def _group_members(pgid: int, started_from: int, cwd: str) -> list[int]:
    """Processes of group `pgid` that started with or after its leader and work in `cwd`."""
    members = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        stat_ = _proc_stat(pid)
        if stat_ is None or stat_[0] != pgid or stat_[1] < started_from:
            continue
        where = _proc_cwd(pid)
        if where is not None and (where == cwd or where.startswith(cwd.rstrip("/") + "/")):
            members.append(pid)
    return members


def kill_recorded_groups(pgid_dir: Path) -> list[int]:
    """SIGKILL what is left of the process groups an interrupted install recorded.

    Their leader died with the install, but grandchildren (what pip or uv started) may still be
    writing into the store. A group is ours only in the same boot: with its leader alive and
    of the recorded start time, or without it, its members started no earlier than the leader
    and working in the recorded directory. Anything else is left alone.
    """
    killed = []
    here = boot_id()
    for f in sorted(pgid_dir.glob("*.pgid")):
        try:
            doc = json.loads(f.read_text())
            pgid, start, boot, cwd = int(doc["pgid"]), int(doc["start"]), doc["boot_id"], doc["cwd"]
        except (OSError, ValueError, TypeError, KeyError):
            doc = None
        f.unlink(missing_ok=True)
        if doc is None or here is None or boot != here or pgid <= 1 or not isinstance(cwd, str):
            continue
        leader = _proc_stat(pgid)
        if leader is not None and leader[0] == pgid:
            if leader[1] != start:
                continue  # the pid was reused: another program's group
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGKILL)
                killed.append(pgid)
            continue
        members = _group_members(pgid, start, cwd)
        for pid in members:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if members:
            killed.append(pgid)
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
    record = None
    try:
        if pgid_dir is not None:
            record = record_group(pgid_dir, child.pid, cwd)
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
        missing = ("No matching distribution", "not found in the provided package locations")
        code = WHEELS_MISSING if any(m in out for m in missing) else INSTALL_FAILED
        raise StoreError(code, f"{what} failed (exit {child.returncode}): {out[-_TAIL:].strip()}")
    return out or ""


_PIP_MIN = "22.3"  # pip's `--python`: run against another interpreter's environment


def pip_beside_us() -> bool:
    """Whether this interpreter has a pip that can install into another venv (`--python`)."""
    try:
        found = tuple(int(part) for part in version("pip").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return False
    return found >= tuple(int(part) for part in _PIP_MIN.split("."))


def find_uv() -> str | None:
    """The `uv` binary (the PyPI wheel installed beside us, else on PATH), or None."""
    if os.environ.get("PROCVISION_INSTALLER", "").lower() == "pip":
        return None
    try:
        import uv

        found: str | None = uv.find_uv_bin()
    except (ImportError, FileNotFoundError, AttributeError):
        found = shutil.which("uv")
    return found


def build_venv(
    package_dir: Path,
    python: str,
    timeout_s: float = 900.0,
    pgid_dir: Path | None = None,
    requirements: str = "requirements.txt",
    installer: str | None = None,
    on_step: Callable[[str], None] | None = None,
) -> tuple[Path, str]:
    """Create `<package_dir>/venv` with `python` and install `requirements` from wheels/ only.

    `installer` "uv" or "pip"; None: uv when present (faster), else pip. Both run
    offline from wheels/ only, binary wheels only, no config files, into a venv without pip;
    uv hard-links the venv's files to a private cache it removes afterwards; pip is this
    interpreter's (`--python`). Returns (venv python, the installer's output). StoreError 2004
    when no wheel matches (a transitive dependency missing from wheels/), 2005 for any other
    failure or the deadline. `on_step(message)` hears of each step as it starts.
    """
    say = on_step or (lambda _message: None)
    uv = find_uv() if installer in (None, "uv") else None
    if installer == "uv" and uv is None:
        raise StoreError(INSTALL_FAILED, "installer uv requested but uv is not installed")
    deadline = time.monotonic() + timeout_s
    venv_dir = package_dir / "venv"
    vpy = venv_python(package_dir)
    wheels, req = str(package_dir / "wheels"), str(package_dir / requirements)
    cache = package_dir.with_name(package_dir.name + _UV_CACHE_SUFFIX)
    if uv is not None:
        # no --seed: pip would come from an index; the store never runs the venv's pip
        make = [uv, "venv", "--python", python, str(venv_dir)]
        install = [uv, "pip", "install", "--python", str(vpy), "--offline", "--no-index"]
        install += ["--find-links", wheels, "--only-binary", ":all:", "--cache-dir", str(cache)]
        install += ["--link-mode", "hardlink", "-r", req]
    else:
        if not pip_beside_us():
            raise StoreError(
                INSTALL_FAILED,
                f"installer pip needs pip {_PIP_MIN} or later in {sys.executable}",
            )
        # like uv's, the venv gets no pip (ensurepip cost seconds): ours installs into it
        make = [python, "-m", "venv", "--without-pip", str(venv_dir)]
        install = [sys.executable, "-m", "pip", "--python", str(vpy), "install", "--no-index"]
        install += ["--find-links", wheels, "--only-binary", ":all:", "--no-compile"]
        install += ["--no-cache-dir", "-r", req]
    tool = "uv" if uv is not None else "pip"
    say(f"creating the venv with {tool} ({python})")
    _run(make, package_dir, deadline, "creating the venv", pgid_dir)
    count = len(list((package_dir / "wheels").glob("*.whl")))
    say(f"installing {requirements} from wheels/ ({count} wheels) with {tool}")
    started = time.monotonic()
    try:
        log = _run(install, package_dir, deadline, "installing from wheels/", pgid_dir)
    finally:
        # the venv's files are the only remaining links to what uv unpacked here
        shutil.rmtree(cache, ignore_errors=True)
    say(f"wheels installed in {time.monotonic() - started:.1f} s")
    return vpy, log
