"""Worker processes at the OS level: filtered environment, the spawner thread, process groups.

Workers die with the Runner. On Linux each child asks the kernel for SIGKILL when its parent
thread exits (prctl PR_SET_PDEATHSIG, set between fork and exec); because the kernel ties that
signal to the *thread* that forked, every worker is spawned from one long-lived `Spawner` thread
that lives exactly as long as the Runner. The adapter also exits on stdin EOF. What the workers
start is contained by `procvision_runner.containment` (subreaper, tree tracking, cgroup v2, state
file; on Windows a kill-on-close job object, untested).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import legacy_transport
from .config import RunnerConfig

if TYPE_CHECKING:
    from .containment import Containment

__all__ = [
    "ENV_ALLOWLIST",
    "ENV_PREFIX_ALLOWLIST",
    "SIGKILL",
    "ProcessHandle",
    "Spawner",
    "WorkerSpec",
    "describe_exit",
    "poll_group",
    "signal_group",
    "wait_exit",
    "worker_env",
]


@dataclass
class WorkerSpec:
    """What a worker runs: the package's python and root, and its identity for logs."""

    name: str
    version: str
    root: Path
    python: str
    # "files": the package kept the original SDK; it speaks the earlier protocol, frames as files
    transport: str = legacy_transport.TRANSPORT_SHM


ENV_ALLOWLIST = ("PATH", "HOME", "LANG", "TMPDIR", "TEMP", "TMP", "SYSTEMROOT", "TZ")
ENV_PREFIX_ALLOWLIST = ("LC_",)

_PR_SET_PDEATHSIG = 1
SIGKILL = getattr(signal, "SIGKILL", signal.SIGTERM)  # Windows has no SIGKILL
_waitid: Any = getattr(os, "waitid", None)
_prctl: Any = None
if sys.platform.startswith("linux"):
    try:
        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        _prctl = None


def worker_env(root: Path, config: RunnerConfig) -> dict[str, str]:
    """Return the filtered environment of a worker: an allowlist plus the PROC_* we set."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k in ENV_ALLOWLIST or k.startswith(ENV_PREFIX_ALLOWLIST)
    }
    env.update(config.extra_env)
    env["PROC_ALGO_ROOT"] = str(root)
    env["PROC_LOG_LEVEL"] = config.log_level
    return env


def _child_setup_for(parent_pid: int, cgroup_procs: str | None = None) -> Callable[[], None]:
    def _child_setup() -> None:
        if cgroup_procs is not None:  # join the worker's cgroup before anything can fork
            try:
                fd = os.open(cgroup_procs, os.O_WRONLY)
                os.write(fd, b"0")
                os.close(fd)
            except OSError:
                pass  # not contained by a cgroup; the process-tree containment still applies
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(70)

    return _child_setup


class Spawner:
    """A long-lived thread that starts every worker (PR_SET_PDEATHSIG is per forking thread).

    With a `containment` (see procvision_runner.containment) each worker gets its mark in the
    environment, joins its cgroup in the child, and is registered once started.
    """

    def __init__(self, containment: Containment | None = None) -> None:
        self._containment = containment
        self._requests: queue.Queue[
            tuple[Callable[[], subprocess.Popen[bytes]], Future[Any]] | None
        ]
        self._requests = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name="procvision-spawner", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            item = self._requests.get()
            if item is None:
                return
            make, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(make())
            except BaseException as exc:
                future.set_exception(exc)

    def spawn(self, argv: list[str], cwd: Path, env: dict[str, str], timeout_s: float) -> Any:
        """Start a process with piped stdio on the spawner thread; return its Popen."""

        def make() -> subprocess.Popen[bytes]:
            kwargs: dict[str, Any] = {}
            mark, cgroup_procs, child_env = None, None, env
            if self._containment is not None:
                mark, cgroup_procs = self._containment.prepare()
                child_env = dict(env, PROCVISION_WORKER=mark)
            if os.name == "nt":  # pragma: no cover - Windows
                kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
            else:
                kwargs["preexec_fn"] = _child_setup_for(os.getpid(), cgroup_procs)
                kwargs["start_new_session"] = True  # a Ctrl-C at the terminal is the Runner's
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=str(cwd),
                    env=child_env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    close_fds=True,
                    **kwargs,
                )
            except BaseException:
                if self._containment is not None and mark is not None:
                    self._containment.abandon(mark)
                raise
            if self._containment is not None and mark is not None:
                self._containment.register(mark, proc)
            return proc

        future: Future[subprocess.Popen[bytes]] = Future()
        self._requests.put((make, future))
        return future.result(timeout=timeout_s)

    def stop(self) -> None:
        """End the thread (only after every worker is reaped: its exit kills children)."""
        self._requests.put(None)
        self._thread.join(timeout=5)


def signal_group(proc: subprocess.Popen[bytes] | None, signum: int) -> None:
    """Signal the worker's whole process group (the helpers its algorithm started too).

    The worker leads its own group (start_new_session). Callers signal only while the
    leader is not reaped, so the group id cannot have been reused by another process.
    """
    if proc is None:
        return
    if os.name == "nt":  # pragma: no cover - Windows
        with contextlib.suppress(OSError):
            if signum == SIGKILL:
                proc.kill()
            else:
                proc.terminate()
        return
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signum)


def poll_group(proc: subprocess.Popen[bytes] | None) -> int | None:
    """Popen.poll(), but a leader found exited takes its process group down before it is
    reaped: helpers left behind would hold the stderr pipe (and the Runner's resources)."""
    if proc is None:
        return None
    if proc.returncode is not None:
        return proc.returncode
    if _waitid is not None:
        try:
            exited = _waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            exited = None  # reaped meanwhile by another thread's poll
        if exited is not None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, SIGKILL)
    return proc.poll()


def wait_exit(proc: subprocess.Popen[bytes] | None, timeout_s: float) -> int | None:
    """Poll the process (group-aware) until it exits or `timeout_s` passes; its code or None."""
    if proc is None:
        return None
    deadline = time.monotonic() + timeout_s
    delay = 0.001
    while True:
        code = poll_group(proc)
        if code is not None:
            return code
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.05)


def describe_exit(proc: subprocess.Popen[bytes] | None) -> str:
    """Say how the process ended: exit code or signal name (waits up to 1 s for it)."""
    code = wait_exit(proc, 1.0)
    if code is None:
        return "closed its pipes but is still running"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class ProcessHandle:
    """One spawned worker's process group: polled, SIGTERMed, SIGKILLed after a grace, reaped."""

    def __init__(self, kill_grace_ms: int) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self._grace_s = kill_grace_ms / 1000
        self._kill_at: float | None = None  # when a started termination escalates to SIGKILL

    @property
    def pid(self) -> int | None:
        """The process id (None before the spawn)."""
        return None if self.proc is None else self.proc.pid

    def poll(self) -> int | None:
        """The exit code once exited (the group taken down first), else None."""
        return poll_group(self.proc)

    def exited(self) -> bool:
        """Whether the process has been reaped (or never started)."""
        return self.proc is None or self.poll() is not None

    def wait_exit(self, timeout_s: float) -> int | None:
        """Wait up to `timeout_s` for the exit; its code or None."""
        return wait_exit(self.proc, timeout_s)

    def describe_exit(self) -> str:
        """Say how the process ended: exit code or signal name (waits up to 1 s for it)."""
        return describe_exit(self.proc)

    def signal(self, signum: int) -> None:
        """Signal the whole process group (the helpers its algorithm started too)."""
        signal_group(self.proc, signum)

    def terminate(self) -> None:
        """SIGTERM now and SIGKILL once the grace period is over (by tick); idempotent."""
        if self.proc is None or self.poll() is not None or self._kill_at is not None:
            return
        self._kill_at = time.monotonic() + self._grace_s
        self.signal(signal.SIGTERM)

    def tick(self, now: float) -> None:
        """Escalate a started termination to SIGKILL once its grace period is over."""
        if self._kill_at is not None and now >= self._kill_at and not self.exited():
            self.signal(SIGKILL)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after what is left of the grace period; wait for the exit."""
        if self.poll() is not None:
            return
        grace = self._grace_s
        if self._kill_at is not None:  # the grace period already started
            grace = max(0.0, self._kill_at - time.monotonic())
        self.signal(signal.SIGTERM)
        if self.wait_exit(grace) is None:
            self.signal(SIGKILL)
            self.wait_exit(5.0)

    def kill(self) -> None:
        """SIGKILL what is left of the group and wait for the exit (bounded)."""
        if self.proc is not None and self.poll() is None:
            self.signal(SIGKILL)
            self.wait_exit(5.0)
