"""Containment: what an algorithm starts dies with its worker and with the Runner (item 3)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from procvision_runner import Runner, RunnerConfig, proctable
from procvision_runner.cgroups import cgroup_pids, own_cgroup_dir
from procvision_runner.containment import MARK_ENV, Containment

FAULTY = Path(__file__).resolve().parents[1] / "algos" / "runner" / "faulty"
FRAME = np.full((8, 8, 3), 1, dtype=np.uint8)
KINDS = ("group", "session", "daemon", "scrubbed")


def _wait_for(predicate: Any, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def _running(pid: int) -> bool:
    proc = proctable.read_proc(pid)
    return proc is not None and not proc.zombie


def _gone(pid: int) -> bool:
    """Not running, and reaped if it was ours to reap (no zombie child of this process)."""
    proc = proctable.read_proc(pid)
    return proc is None or (proc.zombie and proc.ppid != os.getpid())


def _package(tmp_path: Path) -> Path:
    root = tmp_path / "escaper"
    shutil.copytree(FAULTY, root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest.update(name="escaper", entry_point="faulty_algo:SpawnsEscapingHelpers")
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _helpers(directory: Path) -> dict[int, str]:
    """pid -> kind of every helper written so far."""
    out = {}
    for path in directory.iterdir():
        kind, pid = path.name.split("-")
        out[int(pid)] = kind
    return out


def _config(helper_dir: Path, **overrides: Any) -> RunnerConfig:
    values: dict[str, Any] = {
        "warmup_calls": 0,
        "warmup_shape": (8, 8, 3),
        "execute_timeout_ms": 1500,
        "heartbeat_interval_ms": 500,
        "kill_grace_ms": 300,
        "restart_backoff_initial_ms": 20,
        "extra_env": {
            "PROC_TEST_HELPER_DIR": str(helper_dir),
            "PROC_TEST_HELPERS": ",".join(KINDS),
        },
    }
    values.update(overrides)
    return RunnerConfig(**values)


def _owned(runner: Runner) -> set[int]:
    return {pid for pid, _ in runner._containment.owned()}


def _unowned(runner: Runner, pids: list[int], directory: Path) -> list[tuple[str, Any, Any]]:
    """What the containment has not claimed: kind, /proc view, worker mark (for the failure)."""
    kinds, owned = _helpers(directory), _owned(runner)
    return [
        (kinds[p], proctable.read_proc(p), proctable.environ_value(p, MARK_ENV))
        for p in pids
        if p not in owned
    ]


def _generation(directory: Path, known: set[int]) -> list[int]:
    assert _wait_for(lambda: len(set(_helpers(directory)) - known) == len(KINDS))
    return sorted(set(_helpers(directory)) - known)


@pytest.mark.slow
@pytest.mark.parametrize("cgroups", [False, True])
def test_escaping_helpers_die_on_timeout_restart_and_close(tmp_path: Path, cgroups: bool) -> None:
    if cgroups and own_cgroup_dir() is None:
        pytest.skip("no writable cgroup v2 here")
    helper_dir = tmp_path / "helpers"
    helper_dir.mkdir()
    runner = Runner(_config(helper_dir, worker_cgroups=cgroups))
    try:
        runner.load(_package(tmp_path))
        first = _generation(helper_dir, set())
        assert all(_running(p) for p in first)
        # The containment has seen the whole tree (it walks it every 0.25 s).
        assert _wait_for(lambda: set(first) <= _owned(runner)), _unowned(runner, first, helper_dir)
        if cgroups:
            [worker] = [w["pid"] for w in runner.stats()["workers"]]
            assert "procvision-" in Path(f"/proc/{worker}/cgroup").read_text()

        timed_out = runner.execute("f1", 1, FRAME, user_params={"mode": "sleep"})
        assert timed_out["error_code"] == "1005" and "timed out" in timed_out["message"]
        assert _wait_for(lambda: all(_gone(p) for p in first)), {
            p: _helpers(helper_dir)[p] for p in first if not _gone(p)
        }

        second = _generation(helper_dir, set(first))
        assert _wait_for(lambda: set(second) <= _owned(runner)), _unowned(
            runner, second, helper_dir
        )
        fatal = runner.execute("f1", 1, FRAME, user_params={"mode": "fatal"})
        assert fatal["error_code"] == "1009"  # FatalError: the worker is restarted
        assert _wait_for(lambda: all(_gone(p) for p in second))

        third = _generation(helper_dir, set(first) | set(second))
        assert _wait_for(lambda: set(third) <= _owned(runner)), _unowned(runner, third, helper_dir)
        assert all(_running(p) for p in third)
    finally:
        runner.close()
    assert all(_gone(p) for p in _helpers(helper_dir)), "helpers outlived Runner.close()"
    if runner._containment.cgroups is not None:
        assert not runner._containment.cgroups.base.exists()


_VICTIM = """
import json, sys, time
from pathlib import Path
from procvision_runner import Runner, RunnerConfig
helper_dir, package, state_dir, cgroups = sys.argv[1:5]
runner = Runner(RunnerConfig(
    warmup_calls=0, warmup_shape=(8, 8, 3), heartbeat_interval_ms=500,
    state_dir=state_dir or None, worker_cgroups=cgroups == "1",
    extra_env={"PROC_TEST_HELPER_DIR": helper_dir, "PROC_TEST_HELPERS": sys.argv[5]},
))
runner.load(package)
workers = [w["pid"] for w in runner.stats()["workers"]]
helpers = {int(p.name.split("-")[1]) for p in Path(helper_dir).iterdir()}
deadline = time.monotonic() + 30
while not helpers <= {p for p, _ in runner._containment.owned()} and time.monotonic() < deadline:
    time.sleep(0.05)
runner._containment.sweep()  # the state file now lists every helper
print(json.dumps({"workers": workers}), flush=True)
time.sleep(300)
"""


def _sigkill_a_runner(tmp_path: Path, state_dir: str, cgroups: bool, kinds: str) -> dict[int, str]:
    helper_dir = tmp_path / "helpers"
    helper_dir.mkdir()
    script = tmp_path / "victim.py"
    script.write_text(_VICTIM)
    argv = [sys.executable, str(script), str(helper_dir), str(_package(tmp_path)), state_dir]
    proc = subprocess.Popen(
        [*argv, "1" if cgroups else "0", kinds], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        report = json.loads(proc.stdout.readline())
        helpers = _helpers(helper_dir)
        assert len(helpers) == len(kinds.split(",")) and all(_running(p) for p in helpers)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert _wait_for(lambda: not any(_running(p) for p in report["workers"]))
        return helpers
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_next_runner_removes_what_a_sigkilled_runner_left_using_its_state_file(
    tmp_path: Path,
) -> None:
    state_dir = tmp_path / "state"
    # `scrubbed`: a new session and no environment, so neither the worker's group nor the
    # worker mark finds it: only the state file's (pid, start time) record does.
    helpers = _sigkill_a_runner(tmp_path, str(state_dir), False, "group,scrubbed")
    survivors = [p for p in helpers if _running(p)]
    assert survivors, "nothing survived the SIGKILL: the test shows nothing"
    [left] = list(state_dir.glob("runner-*.json"))
    try:
        with Runner(RunnerConfig(warmup_calls=0, state_dir=str(state_dir))):
            assert _wait_for(lambda: all(_gone(p) for p in helpers)), [
                helpers[p] for p in helpers if not _gone(p)
            ]
            assert not left.exists()
        assert not list(state_dir.glob("runner-*.json"))  # close() removed its own
    finally:
        for pid in helpers:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


def test_next_runner_removes_marked_helpers_and_the_cgroup_of_a_sigkilled_runner(
    tmp_path: Path,
) -> None:
    cgroups = own_cgroup_dir() is not None
    helpers = _sigkill_a_runner(tmp_path, "", cgroups, "session,daemon,scrubbed")
    if not cgroups:
        helpers = {p: k for p, k in helpers.items() if k != "scrubbed"}
    try:
        with Runner(RunnerConfig(warmup_calls=0, worker_cgroups=cgroups)):
            assert _wait_for(lambda: all(_gone(p) for p in helpers)), [
                (helpers[p], proctable.read_proc(p)) for p in helpers if not _gone(p)
            ]
        if cgroups:
            parent = own_cgroup_dir()
            assert parent is not None
            dead = [d.name for d in parent.glob("procvision-*") if not _owner_alive(d.name)]
            assert dead == []
    finally:
        for pid in _helpers(tmp_path / "helpers"):
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


def _owner_alive(name: str) -> bool:
    pid, start = (int(x) for x in name.split("-")[1:3])
    proc = proctable.read_proc(pid)
    return proc is not None and proc.start == start


# A grandchild (so its parent exits and this process adopts it) that starts with an empty
# environment and, once told to, execs `sleep` with the given worker mark: a widened picture of
# an orphan caught in the middle of an exec, when /proc/<pid>/environ reads as empty.
_LATE_MARK = """
import os, subprocess, sys
go, sleep, mark = sys.argv[1:4]
code = (
    "import os, sys, time\\n"
    "while not os.path.exists(sys.argv[1]): time.sleep(0.01)\\n"
    "os.execve(sys.argv[2], ['sleep', '300'], {'PROCVISION_WORKER': sys.argv[3]})\\n"
)
child = subprocess.Popen([sys.executable, "-c", code, go, sleep, mark], env={},
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
print(child.pid, flush=True)
"""


def test_an_adopted_orphan_read_mid_exec_is_claimed_once_its_mark_shows(tmp_path: Path) -> None:
    containment = Containment(use_cgroups=False)
    go = tmp_path / "go"
    sleep = shutil.which("sleep")
    assert sleep is not None
    mark = f"{containment.token}.999"  # a worker of this containment that is gone
    pid = 0
    try:
        launcher = subprocess.Popen(
            [sys.executable, "-c", _LATE_MARK, str(go), sleep, mark],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert launcher.stdout is not None
        pid = int(launcher.stdout.readline())
        assert launcher.wait(timeout=30) == 0
        assert _wait_for(lambda: getattr(proctable.read_proc(pid), "ppid", 0) == os.getpid())
        for _ in range(3):  # adopted, environment empty: not judged yet
            containment.sweep()
        assert pid not in {p for p, _ in containment.owned()} and _running(pid)
        go.touch()
        assert _wait_for(lambda: proctable.environ_value(pid, MARK_ENV) == mark)
        # now marked by a gone worker: claimed, SIGKILLed and (adopted) reaped
        assert _wait_for(lambda: containment.sweep() >= 0 and _gone(pid)), proctable.read_proc(pid)
    finally:
        containment.close()
        if pid and _running(pid):
            os.kill(pid, signal.SIGKILL)


_SUBREAPER = """
import ctypes, json, os, signal, subprocess
from procvision_runner import Runner, RunnerConfig
from procvision_runner.proctable import read_proc
libc = ctypes.CDLL(None)
def flag():
    value = ctypes.c_int(0)
    libc.prctl(37, ctypes.byref(value), 0, 0, 0)  # PR_GET_CHILD_SUBREAPER
    return value.value
def orphan_parent():
    shell = subprocess.run(["sh", "-c", "sleep 30 </dev/null >/dev/null 2>&1 & echo $!"],
                           capture_output=True, text=True, check=True)
    pid = int(shell.stdout)
    parent = read_proc(pid).ppid
    os.kill(pid, signal.SIGKILL)
    return parent == os.getpid()
config = RunnerConfig(warmup_calls=0, worker_cgroups=False)
states = [flag()]
with Runner(config):
    states.append(flag())
    states.append(orphan_parent())
    with Runner(config):
        states.append(flag())
    states.append(flag())
states.append(flag())
states.append(orphan_parent())
libc.prctl(36, 1, 0, 0, 0)  # a host process that is a subreaper of its own accord stays one
with Runner(config):
    pass
states.append(flag())
print(json.dumps(states))
"""


def test_the_process_is_a_subreaper_only_while_a_runner_is_open(tmp_path: Path) -> None:
    # After its last Runner closes nothing would reap the orphans it adopted (they would stay
    # zombies of the host process): the flag is dropped, unless the host had set it itself.
    script = tmp_path / "subreaper.py"
    script.write_text(_SUBREAPER)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == [0, 1, True, 1, 1, 0, False, 1]


def test_reading_a_cgroup_another_runner_removes_meanwhile_is_no_error(tmp_path: Path) -> None:
    # Runners starting together each remove a gone Runner's cgroup: one may vanish while
    # another walks it. A plain directory tree stands in for the cgroup (the walk is the same).
    cgroup = tmp_path / "procvision-1-2-abcd"
    stop = threading.Event()

    def create_and_remove() -> None:
        while not stop.is_set():
            (cgroup / "w-1").mkdir(parents=True, exist_ok=True)
            (cgroup / "w-1" / "cgroup.procs").write_text("")
            shutil.rmtree(cgroup, ignore_errors=True)

    other = threading.Thread(target=create_and_remove)
    other.start()
    try:
        for _ in range(20000):
            assert cgroup_pids(cgroup) == []
    finally:
        stop.set()
        other.join(timeout=30)
