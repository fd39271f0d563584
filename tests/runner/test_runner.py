"""Runner tests: real adapter processes, real shared memory, real faults."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from procvision_algorithm_sdk.segment import SEGMENT_PREFIX
from procvision_runner import Runner, RunnerConfig, RunnerError

ALGOS = Path(__file__).resolve().parents[1] / "runner_algos"
FAULTY = ALGOS / "faulty"
FRAME = np.full((24, 32, 3), 7, dtype=np.uint8)


def _config(**overrides: Any) -> RunnerConfig:
    values: dict[str, Any] = {
        "execute_timeout_ms": 1500,
        "pre_execute_timeout_ms": 1500,
        "startup_timeout_ms": 20000,
        "setup_timeout_ms": 20000,
        "queue_timeout_ms": 20000,
        "kill_grace_ms": 500,
        "heartbeat_interval_ms": 500,
        "heartbeat_grace_ms": 1000,
        "restart_backoff_initial_ms": 20,
        "restart_backoff_max_ms": 200,
        "warmup_calls": 0,
        "warmup_shape": (16, 16, 3),
    }
    values.update(overrides)
    return RunnerConfig(**values)


def _alive(pid: int) -> bool:
    """Whether `pid` is a live (non-zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _our_segments(pid: int | None = None) -> set[str]:
    prefix = f"{SEGMENT_PREFIX}{os.getpid() if pid is None else pid}_"
    return {n for n in os.listdir("/dev/shm") if n.startswith(prefix)}


def _wait_for(predicate: Any, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


class Tracked:
    """A Runner plus every worker pid it ever reported, checked clean after close()."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.pids: set[int] = set()

    def worker_pids(self) -> list[int]:
        pids = [w["pid"] for w in self.runner.stats()["workers"] if w["pid"]]
        self.pids.update(pids)
        return pids

    def ready_pids(self) -> list[int]:
        pids = [
            w["pid"] for w in self.runner.stats()["workers"] if w["state"] == "READY" and w["pid"]
        ]
        self.pids.update(pids)
        return pids

    def calls(self) -> int:
        return sum(w["calls"] for w in self.runner.stats()["workers"])


@pytest.fixture
def make_runner() -> Iterator[Any]:
    made: list[Tracked] = []
    before = _our_segments()

    def make(**overrides: Any) -> Tracked:
        tracked = Tracked(Runner(_config(**overrides)))
        made.append(tracked)
        return tracked

    yield make
    for tracked in made:
        tracked.worker_pids()
        tracked.runner.close()
        stray = [p for p in tracked.pids if _alive(p)]
        assert not stray, f"worker processes left after close(): {stray}"
    assert _our_segments() - before == set(), "shared-memory segments left after close()"


def _package(tmp_path: Path, name: str, entry: str, pids: list[str] | None = None) -> Path:
    """A copy of the faulty package under another name/entry point."""
    root = tmp_path / name
    shutil.copytree(FAULTY, root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest.update(name=name, entry_point=entry)
    if pids is not None:
        manifest["supported_pids"] = pids
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _ok(result: dict[str, Any] | None) -> dict[str, Any]:
    assert result is not None
    assert result["status"] == "OK", result
    return result


# ---------------------------------------------------------------------------------------------
# faults


@pytest.mark.parametrize(
    ("mode", "code", "words"),
    [
        ("sleep", "1005", "execute timed out after 1500 ms"),
        ("busy", "1005", "execute timed out after 1500 ms"),
        ("segfault", "1005", "SIGSEGV"),
        ("exit", "1005", "exit code 7"),
        ("fatal", "1009", "the device is gone"),
    ],
)
def test_fault_gives_coded_result_then_next_call_succeeds(
    make_runner: Any, mode: str, code: str, words: str
) -> None:
    tracked = make_runner()
    runner = tracked.runner
    runner.load(FAULTY)
    first_pid = tracked.worker_pids()[0]
    out = runner.run_step("f1", 1, FRAME, user_params={"mode": mode})
    _ok(out["pre_execute"])
    result = out["execute"]
    assert result["status"] == "ERROR"
    assert result["error_code"] == code
    assert words in result["message"]
    if code == "1005":
        assert result["retryable"] is True
    after = runner.run_step("f1", 1, FRAME, user_params={"tag": "next"})
    assert _ok(after["execute"])["data"]["tag"] == "next"
    assert after["execute"]["data"]["worker_pid"] != first_pid  # a replacement answered
    assert _wait_for(lambda: not _alive(first_pid))
    stats = runner.stats()
    assert stats["restarts"] >= 1
    tracked.worker_pids()


def test_worker_sigkilled_mid_call(make_runner: Any) -> None:
    tracked = make_runner(execute_timeout_ms=30000)
    runner = tracked.runner
    runner.load(FAULTY)
    victim = tracked.worker_pids()[0]

    def kill_when_busy() -> None:
        if _wait_for(lambda: any(w["busy"] for w in runner.stats()["workers"])):
            time.sleep(0.1)
            os.kill(victim, signal.SIGKILL)

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    result = runner.run_step("f1", 1, FRAME, user_params={"mode": "sleep"})["execute"]
    killer.join()
    assert result["error_code"] == "1005"
    assert "SIGKILL" in result["message"]
    _ok(runner.run_step("f1", 1, FRAME)["execute"])
    assert runner.stats()["crashes"] >= 1


def test_stopped_worker_with_a_large_call_does_not_stall_other_packages(
    make_runner: Any,
) -> None:
    # A call frame larger than the pipe to a SIGSTOPped worker keeps its writer blocked until
    # the call's deadline (60 s). Supervision must go on meanwhile: the stopped worker is lost
    # by heartbeat, and a worker of another package that dies is replaced, both well before it.
    # The heartbeat window (~10 s) must outlast the caller thread's start and this test's polling
    # on a box running two suites at once (3 s was seen to be too short), so the blocked write is
    # observed in progress before it expires; it stays far below the deadline.
    tracked = make_runner(
        execute_timeout_ms=60000, heartbeat_interval_ms=500, heartbeat_grace_ms=9500
    )
    runner = tracked.runner
    faulty_key = runner.load(FAULTY)
    runner.load(ALGOS / "noop")
    stuck = runner._pools[faulty_key].workers()[0]
    noop_pid = next(w["pid"] for w in runner.stats()["workers"] if w["package"] == "noop")
    tracked.worker_pids()
    os.kill(stuck.pid, signal.SIGSTOP)
    answer: dict[str, Any] = {}
    caller = threading.Thread(
        target=lambda: answer.update(
            runner.execute("f1", 1, FRAME, user_params={"tag": "x" * 300_000})
        )
    )
    try:
        caller.start()
        assert _wait_for(lambda: stuck.in_call and stuck.channel.writing, 30), (
            stuck.info(),
            answer,
        )
        os.kill(noop_pid, signal.SIGKILL)

        def noop_replaced() -> bool:
            return any(
                w["package"] == "noop" and w["state"] == "READY" and w["pid"] != noop_pid
                for w in runner.stats()["workers"]
            )

        assert _wait_for(noop_replaced, 30), runner.stats()["workers"]
        caller.join(60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stuck.pid, signal.SIGCONT)
    assert answer["error_code"] == "1005"
    assert "heartbeat lost" in answer["message"], answer["message"]
    assert not _alive(stuck.pid) or _wait_for(lambda: not _alive(stuck.pid))
    _ok(runner.execute("f1", 1, FRAME, user_params={"tag": "after"}))
    _ok(runner.execute("n1", 1, FRAME))
    tracked.worker_pids()


def test_ten_megabytes_of_output_never_stalls(make_runner: Any) -> None:
    tracked = make_runner(execute_timeout_ms=60000)
    runner = tracked.runner
    runner.load(FAULTY)
    result = runner.run_step("f1", 1, FRAME, user_params={"mode": "spam"}, session_id="spam")
    _ok(result["execute"])
    logs = runner.session_logs("spam")
    assert 0 < len(logs) <= runner.config.session_log_lines
    _ok(runner.run_step("f1", 1, FRAME, user_params={"tag": "after"})["execute"])


def test_helper_processes_die_with_their_worker_and_readers_end(
    make_runner: Any, tmp_path: Path
) -> None:
    helpers_dir = tmp_path / "helper-pids"
    helpers_dir.mkdir()
    tracked = make_runner(extra_env={"PROC_TEST_HELPER_DIR": str(helpers_dir)})
    runner = tracked.runner
    runner.load(_package(tmp_path, "helpers", "faulty_algo:SpawnsHelper"))

    def helpers() -> list[int]:
        return sorted(int(p.name.split("-")[1]) for p in helpers_dir.iterdir())

    def readers() -> list[str]:
        return [
            t.name
            for t in threading.enumerate()
            if t.name.startswith("helpers@") and t.name.endswith(("-err", "-out"))
        ]

    [first] = helpers()
    assert _alive(first)
    old_worker = tracked.worker_pids()[0]
    timed_out = runner.execute("f1", 1, FRAME, user_params={"mode": "sleep"})
    assert timed_out["error_code"] == "1005" and "timed out" in timed_out["message"]
    assert _wait_for(lambda: len(helpers()) == 2 and old_worker not in tracked.ready_pids())
    assert _wait_for(lambda: not _alive(first)), "the helper outlived its timed-out worker"
    assert _wait_for(lambda: len(readers()) == 2), readers()  # only the replacement's two
    second = next(pid for pid in helpers() if pid != first)
    assert _alive(second)
    _ok(runner.execute("f1", 1, FRAME))
    tracked.worker_pids()
    runner.close()
    assert not _alive(second), "the helper outlived Runner.close()"
    assert readers() == []


def test_worker_that_closes_its_pipes_but_runs_on_is_killed(
    make_runner: Any, tmp_path: Path
) -> None:
    tracked = make_runner(execute_timeout_ms=30000)
    runner = tracked.runner
    key = runner.load(_package(tmp_path, "closer", "faulty_algo:ClosesPipes"))
    worker = runner._pools[key].workers()[0]
    _ok(runner.pre_execute("f1", 1, FRAME))
    segments = set(worker.slots.names)
    assert segments and segments <= set(os.listdir("/dev/shm"))
    tracked.worker_pids()
    result = runner.run_step("f1", 1, FRAME)["execute"]
    assert result["error_code"] == "1005" and "crashed" in result["message"], result
    assert _wait_for(lambda: not _alive(worker.pid)), "a worker without pipes was left running"
    assert _wait_for(lambda: not segments & set(os.listdir("/dev/shm")))
    _ok(runner.pre_execute("f1", 1, FRAME))  # the Runner goes on with a replacement
    assert worker.pid not in tracked.ready_pids()


def test_crash_loop_marks_package_failed(make_runner: Any) -> None:
    tracked = make_runner(crash_loop_failures=3)
    runner = tracked.runner
    key = runner.load(FAULTY)
    for _ in range(3):
        out = runner.run_step("f1", 1, FRAME, user_params={"mode": "segfault"})
        tracked.worker_pids()
        assert out["pre_execute"]["status"] == "ERROR" or out["execute"]["error_code"] == "1005"
    assert _wait_for(lambda: runner.packages()[0]["state"] == "FAILED")
    started = time.monotonic()
    result = runner.run_step("f1", 1, FRAME)["pre_execute"]
    assert result["status"] == "ERROR"
    assert "FAILED" in result["message"] and "crash loop" in result["message"]
    assert result["error_code"] == "1005" and result["retryable"] is True  # contract: 1005
    assert "next trial in" in result["message"] and result["data"]["next_trial_in_ms"] > 0
    assert time.monotonic() - started < runner.config.queue_timeout_ms / 1000  # not queued
    assert runner.stats()["crash_loops"] == 1
    assert runner.package_info(key)["name"] == "faulty"


@pytest.mark.parametrize(
    ("entry", "code", "words"),
    [
        ("faulty_algo:SetupExit", "1005", "exit code 5"),
        ("faulty_algo:SetupRaise", "1009", "model file is corrupt"),
        ("faulty_algo:DoesNotExist", "1003", "DoesNotExist"),
        ("no_such_module:Algo", "1003", "no_such_module"),
    ],
)
def test_start_failures_mark_package_failed(
    make_runner: Any, tmp_path: Path, entry: str, code: str, words: str
) -> None:
    tracked = make_runner()
    runner = tracked.runner
    root = _package(tmp_path, "broken", entry)
    key = runner.load(root)
    package = runner.packages()[0]
    assert package["state"] == "FAILED"
    assert package["error"]["error_code"] == code
    assert words in package["error"]["message"]
    result = runner.run_step("f1", 1, FRAME)["pre_execute"]
    assert result["status"] == "ERROR" and result["error_code"] == code
    assert "FAILED" in result["message"] and words in result["message"]
    assert runner.routes()["f1"] == key
    assert runner.stats()["restarts"] == 0  # no restart storm


def test_slow_setup_is_kept_alive_by_heartbeats(make_runner: Any, tmp_path: Path) -> None:
    # The adapter gives up after 3 x 500 + 500 ms without a frame; setup takes 5 s, well inside
    # setup_timeout_ms, so only pings sent while the worker is still starting keep it alive.
    # (A 200 ms interval left too little slack for a late ping thread on a loaded box.)
    tracked = make_runner(
        heartbeat_interval_ms=500,
        heartbeat_grace_ms=500,
        warmup_calls=1,
        extra_env={"PROC_TEST_SETUP_S": "5"},
    )
    runner = tracked.runner
    runner.load(_package(tmp_path, "slow", "faulty_algo:SlowSetup"))
    package = runner.packages()[0]
    assert package["state"] == "READY", package.get("error")
    _ok(runner.run_step("f1", 1, FRAME, user_params={"tag": "warm"})["execute"])
    assert runner.stats()["restarts"] == 0


_SMALL_SHM_CHILD = """
import json, os, sys
import numpy as np
from procvision_algorithm_sdk import segment
from procvision_runner import Runner, RunnerConfig
from procvision_runner.slots import SlotRing

algo = sys.argv[1]
report = {}
name = segment.new_segment_name()
try:
    segment.create_segment(name, 8 << 20)
    report["create"] = "created"
except OSError as exc:
    report["create"] = [exc.errno, str(exc)]
report["left_behind"] = os.path.exists("/dev/shm/" + name)
ring = SlotRing("probe")
try:
    ring.acquire(8 << 20, 1.0)
    report["ring"] = "acquired"
except OSError as exc:
    report["ring"] = str(exc)
with ring.acquire(1024, 1.0) as slot:
    report["ring_after"] = slot.capacity >= 1024
ring.close()
config = dict(warmup_calls=0, warmup_shape=(16, 16, 3), execute_timeout_ms=20000)
with Runner(RunnerConfig(**config)) as runner:
    runner.load(algo)
    big = np.zeros((1500, 1000, 3), np.uint8)
    report["big"] = runner.execute("f1", 1, big)
    report["small"] = runner.execute("f1", 1, np.zeros((8, 8, 3), np.uint8))
config.update(warmup_calls=1, warmup_shape=(1500, 1000, 3))
with Runner(RunnerConfig(**config)) as runner:
    runner.load(algo)
    report["warm"] = runner.packages()[0]
print(json.dumps(report, default=str), flush=True)
"""


def _unshare_unavailable() -> str | None:
    """Why a private mount namespace cannot be made here, or None."""
    if shutil.which("unshare") is None:
        return "the unshare tool (util-linux) is not installed"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True
    )
    if probe.returncode != 0:
        return "unshare --mount is refused here (needs root or CAP_SYS_ADMIN)"
    return None


def test_full_dev_shm_gives_coded_results_not_sigbus(tmp_path: Path) -> None:
    why = _unshare_unavailable()
    if why is not None:
        pytest.skip(f"needs a private 4 MiB /dev/shm: {why}")
    script = tmp_path / "small_shm.py"
    script.write_text(_SMALL_SHM_CHILD)
    shell = 'mount -t tmpfs -o size=4m tmpfs /dev/shm && exec "$0" "$@"'
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", shell]
    proc = subprocess.run(
        [*command, sys.executable, str(script), str(FAULTY)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["create"][0] == errno.ENOSPC and "shared memory exhausted" in report["create"][1]
    assert report["left_behind"] is False
    assert "shared memory exhausted" in report["ring"] and report["ring_after"] is True
    big = report["big"]
    assert big["status"] == "ERROR" and big["error_code"] == "9999", big
    assert "shared memory exhausted" in big["message"] and big["retryable"] is True
    _ok(report["small"])
    warm = report["warm"]
    assert warm["state"] == "FAILED" and warm["error"]["error_code"] == "9999", warm
    assert "shared memory exhausted" in warm["error"]["message"]


def test_worker_with_another_protocol_major_version_is_refused(
    make_runner: Any, tmp_path: Path
) -> None:
    pid_file = tmp_path / "fake.pid"
    wrapper = tmp_path / "python9"
    fake = ALGOS / "protocol9_worker.py"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{fake}"\n')
    wrapper.chmod(0o755)
    tracked = make_runner(extra_env={"PROC_TEST_PID_FILE": str(pid_file)})
    runner = tracked.runner
    runner.load(FAULTY, python=str(wrapper))
    package = runner.packages()[0]
    assert package["state"] == "FAILED"
    error = package["error"]
    assert error["error_code"] == "1010", error
    assert "'9.0'" in error["message"] and "'1.0'" in error["message"]
    result = runner.execute("f1", 1, FRAME)
    assert result["error_code"] == "1010"
    assert _wait_for(lambda: not _alive(int(pid_file.read_text())))
    assert runner.stats()["restarts"] == 0


# ---------------------------------------------------------------------------------------------
# pools, routing, params, results


def test_many_threads_each_get_their_own_result(make_runner: Any) -> None:
    tracked = make_runner(queue_size=16)
    runner = tracked.runner
    runner.load(FAULTY, workers=2)
    answers: dict[str, list[dict[str, Any]]] = {}
    lock = threading.Lock()

    def client(n: int) -> None:
        for i in range(50):
            tag = f"t{n}-{i}"
            frame = np.full((8, 8, 3), (n * 50 + i) % 256, dtype=np.uint8)
            out = runner.run_step("f1", 1, frame, user_params={"tag": tag})
            with lock:
                answers.setdefault(tag, []).append(out)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 400
    pids = set()
    for tag, outs in answers.items():
        assert len(outs) == 1
        data = _ok(outs[0]["execute"])["data"]
        n, i = (int(x) for x in tag[1:].split("-"))
        assert data["tag"] == tag
        assert data["pixel"] == (n * 50 + i) % 256
        pids.add(data["worker_pid"])
    assert len(pids) == 2
    assert runner.stats()["shm_bytes_in_use"] == 0


def test_full_queue_answers_busy_at_once(make_runner: Any) -> None:
    tracked = make_runner(queue_size=0)
    runner = tracked.runner
    runner.load(FAULTY)
    slow: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: slow.update(runner.run_step("f1", 1, FRAME, user_params={"mode": "sleep"}))
    )
    thread.start()
    assert _wait_for(lambda: any(w["busy"] for w in runner.stats()["workers"]))
    busy = runner.run_step("f1", 1, FRAME)["pre_execute"]
    thread.join()
    tracked.worker_pids()
    assert busy["error_code"] == "1005" and busy["retryable"] is True
    assert busy["data"]["busy"] is True and "busy" in busy["message"]
    assert slow["execute"]["error_code"] == "1005"
    assert runner.stats()["busy_rejections"] == 1


def test_close_right_after_a_timeout_does_not_wait_for_the_dead_worker(make_runner: Any) -> None:
    # The timed-out worker is still in its SIGTERM grace period when close() comes; it cannot
    # answer a shutdown frame, so close() must not wait shutdown_timeout_ms (twice) for one.
    tracked = make_runner(shutdown_timeout_ms=60000)
    runner = tracked.runner
    runner.load(FAULTY)
    victim = tracked.worker_pids()[0]
    result = runner.execute("f1", 1, FRAME, user_params={"mode": "sleep"})
    assert result["error_code"] == "1005"
    closer = threading.Thread(target=runner.close)
    closer.start()
    closer.join(30)  # well below the 60 s shutdown timeout
    assert not closer.is_alive(), "close() waited for a shutdown answer from a dead worker"
    assert not _alive(victim)


def test_routing_and_unknown_pid(make_runner: Any, tmp_path: Path) -> None:
    tracked = make_runner()
    runner = tracked.runner
    key = runner.load(FAULTY)
    calls = tracked.calls()
    result = runner.run_step("nope", 1, FRAME)
    assert result["execute"] is None
    assert result["pre_execute"]["error_code"] == "1001"
    assert tracked.calls() == calls  # no worker touched
    other = _package(tmp_path, "other", "faulty_algo:Faulty")
    with pytest.raises(RunnerError) as conflict:
        runner.load(other)
    assert conflict.value.error_code == "2006"
    key2 = runner.load(other, activate=False)
    runner.route(["f2"], key2)
    assert runner.routes() == {"f1": key, "f2": key2}
    assert runner.run_step("f2", 1, FRAME)["execute"]["package"]["name"] == "other"
    with pytest.raises(RunnerError):
        runner.route(["zzz"], key2)
    runner.route(["f1"], None)
    assert runner.execute("f1", 1, FRAME)["error_code"] == "1001"
    tracked.worker_pids()
    runner.unload(key2)
    assert runner.run_step("f2", 1, FRAME)["pre_execute"]["error_code"] == "1001"
    assert [p["name"] for p in runner.packages()] == ["faulty"]


def test_call_routed_before_a_switch_is_answered_by_the_old_version(
    make_runner: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    import procvision_runner.calls as calls_module

    tracked = make_runner()
    runner = tracked.runner
    old_key = runner.load(FAULTY)
    new_root = _package(tmp_path, "faulty", "faulty_algo:Faulty")
    manifest = json.loads((new_root / "manifest.json").read_text())
    manifest["version"] = "2.0.0"
    (new_root / "manifest.json").write_text(json.dumps(manifest))
    new_key = runner.load(new_root, activate=False)
    old_pool = runner._pools[old_key]
    tracked.worker_pids()

    # Hold the caller between its route lookup and its worker acquire (parameter validation
    # sits in between), and switch + unload the old version exactly there.
    routed, release = threading.Event(), threading.Event()
    original = calls_module.validate_user_params

    def held(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "caller":
            routed.set()
            release.wait(30)
        return original(*args, **kwargs)

    monkeypatch.setattr(calls_module, "validate_user_params", held)
    answer: dict[str, Any] = {}
    caller = threading.Thread(
        target=lambda: answer.update(runner.execute("f1", 1, FRAME, user_params={"tag": "in"})),
        name="caller",
    )
    caller.start()
    assert routed.wait(30)

    def switch() -> None:
        runner.route(["f1", "f2"], new_key)
        runner.unload(old_key)

    switcher = threading.Thread(target=switch)
    switcher.start()
    assert _wait_for(lambda: old_pool.state != "READY")  # the unload is draining (or done)
    release.set()
    caller.join(60)
    switcher.join(60)
    assert not caller.is_alive() and not switcher.is_alive()
    assert _ok(answer)["data"]["tag"] == "in"
    assert answer["package"] == {"name": "faulty", "version": "1.0.0"}
    after = _ok(runner.execute("f1", 1, FRAME))
    assert after["package"] == {"name": "faulty", "version": "2.0.0"}
    assert old_pool.state == "STOPPED"


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"user_params": {"mode": "nope"}}, "1006"),
        ({"user_params": {"threshold": 2.0}}, "1006"),
        ({"user_params": {"count": "3"}}, "1006"),
        ({"user_params": ["x"]}, "1006"),
        ({"frame": [[1, 2], [3, 4]]}, "1002"),
        ({"frame": np.zeros((4, 4, 3), dtype=np.float32)}, "1002"),
        ({"frame": np.zeros((4, 4, 4), dtype=np.uint8)}, "1002"),
        ({"frame": np.zeros((0, 4, 3), dtype=np.uint8)}, "1002"),
        ({"step": 9}, "1006"),
        ({"step": "1"}, "1006"),
        ({"color_space": "HSV"}, "1006"),
        ({"session_id": 5}, "1006"),
    ],
)
def test_bad_input_is_a_coded_result_before_any_worker_call(
    make_runner: Any, kwargs: dict[str, Any], code: str
) -> None:
    tracked = make_runner()
    runner = tracked.runner
    runner.load(FAULTY)
    calls = tracked.calls()
    frame = kwargs.pop("frame", FRAME)
    step = kwargs.pop("step", 1)
    out = runner.run_step("f1", step, frame, **kwargs)
    assert out["execute"] is None
    assert out["pre_execute"]["status"] == "ERROR"
    assert out["pre_execute"]["error_code"] == code
    assert tracked.calls() == calls


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("field", ["user_params", "session_context"])
@pytest.mark.parametrize(
    "bad",
    [
        {"extra": _nested(5000)},
        {"extra": float("nan")},
        {"extra": b"bytes"},
        {"extra": {1, 2}},
        {1: "an int key"},
    ],
    ids=["deep", "nan", "bytes", "set", "int-key"],
)
def test_unjsonable_input_is_1006_not_an_exception(
    make_runner: Any, field: str, bad: dict[Any, Any]
) -> None:
    tracked = make_runner()
    runner = tracked.runner
    runner.load(FAULTY)
    calls = tracked.calls()
    out = runner.run_step("f1", 1, FRAME, **{field: bad})
    assert out["execute"] is None
    result = out["pre_execute"]
    assert result["status"] == "ERROR" and result["error_code"] == "1006", result
    assert f"{field} is not plain JSON" in result["message"]
    assert tracked.calls() == calls  # refused before any worker call
    _ok(runner.run_step("f1", 1, FRAME)["execute"])


def test_numpy_scalars_in_input_are_converted(make_runner: Any) -> None:
    tracked = make_runner()
    runner = tracked.runner
    runner.load(FAULTY)
    result = _ok(
        runner.execute(
            "f1",
            1,
            FRAME,
            user_params={
                "extra": np.int64(3),
                "ratio": np.float32(0.25),
                "count": np.int16(7),
                "threshold": np.float64(0.75),
            },
            session_context={"line": np.int32(4)},
        )
    )
    echoed = result["data"]["user_params"]
    assert (echoed["extra"], echoed["ratio"], echoed["count"], echoed["threshold"]) == (
        3,
        0.25,
        7,
        0.75,
    )


def test_worker_call_with_unencodable_fields_is_a_1006_frame(make_runner: Any) -> None:
    tracked = make_runner()
    runner = tracked.runner
    key = runner.load(FAULTY)
    worker = runner._pools[key].workers()[0]
    for bad in ({1, 2}, float("inf"), _nested(5000)):
        frame = worker.call("info", {"extra": bad}, 5000)
        assert frame["status"] == "ERROR" and frame["error_code"] == "1006", frame
        assert "not plain JSON" in frame["message"]
    assert worker.state == "READY"
    assert worker.call("info", {}, 5000)["status"] == "OK"


def test_defaults_applied_and_gray_frames(make_runner: Any) -> None:
    tracked = make_runner()
    runner = tracked.runner
    runner.load(FAULTY)
    gray = np.full((10, 12), 42, dtype=np.uint8)
    data = _ok(runner.execute("f1", 1, gray, user_params={"tag": "g"}))["data"]
    assert data["user_params"] == {"tag": "g", "mode": "ok", "count": 0, "threshold": 0.5}
    assert data["pixel"] == 42 and data["shape"] == [10, 12, 3]


def test_results_checked_and_defects_cut(make_runner: Any) -> None:
    tracked = make_runner(max_defects=5)
    runner = tracked.runner
    runner.load(FAULTY)
    cut = _ok(runner.execute("f1", 1, FRAME, user_params={"mode": "defects", "count": 8}))
    assert len(cut["data"]["defect_rects"]) == 5
    assert cut["warnings"] and "cut from 8 to" in cut["warnings"][0]
    bad = runner.execute("f1", 1, FRAME, user_params={"mode": "bad"})
    assert bad["status"] == "ERROR" and bad["error_code"] == "1008"
    assert "result_status" in bad["message"]
    assert bad["original"]["data"]["result_status"] == "MAYBE"


# ---------------------------------------------------------------------------------------------
# sessions and logs


def test_session_survives_worker_restart(make_runner: Any) -> None:
    tracked = make_runner()
    runner = tracked.runner
    runner.load(FAULTY)
    first = runner.run_step(
        "f1", 1, FRAME, user_params={"mode": "remember", "tag": "board-A"}, session_id="s1"
    )
    old_pid = _ok(first["execute"])["data"]["worker_pid"]
    os.kill(old_pid, signal.SIGKILL)
    assert _wait_for(lambda: old_pid not in tracked.ready_pids() and tracked.ready_pids())
    second = runner.run_step("f1", 2, FRAME, session_id="s1")
    data = _ok(second["execute"])["data"]
    assert data["worker_pid"] != old_pid
    assert data["recalled"] == "board-A"
    assert data["pre"] == 7  # pre of step 2 ran on the same worker, same session
    runner.reset("s1")
    third = runner.run_step("f1", 2, FRAME, session_id="s1")
    assert _ok(third["execute"])["data"]["recalled"] is None
    assert runner.has_session("s1") and not runner.has_session("never-used")
    runner.close_session("s1")
    assert runner.stats()["sessions"] == 0
    assert not runner.has_session("s1")


def test_sessions_expire_after_idle_ttl(make_runner: Any) -> None:
    tracked = make_runner(session_ttl_s=0.2)
    runner = tracked.runner
    runner.load(FAULTY)
    runner.run_step("f1", 1, FRAME, user_params={"mode": "remember", "tag": "x"}, session_id="t")
    assert _wait_for(lambda: not runner.has_session("t"), 10)
    assert runner.stats()["sessions"] == 0
    again = runner.run_step("f1", 2, FRAME, session_id="t")
    assert _ok(again["execute"])["data"]["recalled"] is None


def test_logs_annotated_per_session_and_forwarded(
    make_runner: Any, caplog: pytest.LogCaptureFixture
) -> None:
    tracked = make_runner()
    runner = tracked.runner
    runner.load(FAULTY)
    caplog.set_level(logging.INFO, logger="procvision.worker")
    runner.run_step(
        "f1",
        1,
        FRAME,
        user_params={"mode": "log", "tag": "L"},
        session_id="logged",
        session_context={"trace_id": "tr-9"},
    )
    records = [r for r in runner.session_logs("logged") if r.get("message") == "hello from execute"]
    assert records, runner.session_logs("logged")
    record = records[0]
    assert record["tag"] == "L"
    assert record["package"] == "faulty" and record["version"] == "1.0.0"
    assert record["session_id"] == "logged" and record["trace_id"] == "tr-9"
    assert record["worker"] and record["worker_pid"] in tracked.worker_pids()
    assert _wait_for(lambda: any("hello from execute" in r.getMessage() for r in caplog.records), 5)


def test_warmup_runs_before_first_call_and_observers(make_runner: Any) -> None:
    tracked = make_runner(warmup_calls=2)
    runner = tracked.runner
    runner.load(FAULTY)
    # setup + info + 2 steps x 2 runs x (pre + execute)
    assert tracked.calls() == 2 + 2 * 2 * 2
    assert runner.stats()["sessions"] == 0  # warm-up sessions are not kept
    seen: list[Any] = []
    runner.add_call_observer(seen.append)
    runner.run_step("f1", 1, FRAME)
    assert [(r.phase, r.status, r.name) for r in seen] == [
        ("pre", "OK", "faulty"),
        ("execute", "OK", "faulty"),
    ]
    assert seen[0].total_ms >= seen[0].algorithm_ms


def test_warmup_writes_and_attaches_every_slot(make_runner: Any) -> None:
    tracked = make_runner(warmup_calls=1, slots_per_worker=3)
    runner = tracked.runner
    key = runner.load(FAULTY)
    # setup + info + 2 steps x 1 run, plus 1 extra run so that each of the 3 slots is used
    assert tracked.calls() == 2 + 3 * 2
    worker = runner._pools[key].workers()[0]
    names = worker.slots.names
    assert len(names) == 3
    assert worker.slots.bytes_allocated >= 3 * 16 * 16 * 3
    with open(f"/proc/{worker.pid}/maps") as handle:
        mapped = handle.read()
    assert all(f"/dev/shm/{name}" in mapped for name in names), (names, mapped)
    _ok(runner.run_step("f1", 1, FRAME)["execute"])


def test_worker_environment_is_filtered(make_runner: Any, monkeypatch: Any) -> None:
    from procvision_runner.worker import worker_env

    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    config = _config(extra_env={"CUDA_VISIBLE_DEVICES": "0"})
    env = worker_env(FAULTY, config)
    assert "SECRET_TOKEN" not in env
    assert env["LC_ALL"] == "C.UTF-8"
    assert env["PROC_ALGO_ROOT"] == str(FAULTY) and env["CUDA_VISIBLE_DEVICES"] == "0"
    assert all(
        k
        in (
            "PATH",
            "HOME",
            "LANG",
            "TMPDIR",
            "TEMP",
            "TMP",
            "SYSTEMROOT",
            "TZ",
            "CUDA_VISIBLE_DEVICES",
        )
        or k.startswith(("LC_", "PROC_"))
        for k in env
    )
    tracked = make_runner()
    tracked.runner.load(FAULTY)
    pid = tracked.worker_pids()[0]
    with open(f"/proc/{pid}/environ", "rb") as handle:
        assert b"SECRET_TOKEN" not in handle.read()


_KILLED_RUNNER = """
import json, sys, time
import numpy as np
from procvision_runner import Runner, RunnerConfig
runner = Runner(RunnerConfig(warmup_calls=0, heartbeat_interval_ms=500))
runner.load(sys.argv[1], workers=2)
runner.run_step("f1", 1, np.zeros((8, 8, 3), np.uint8))
stats = runner.stats()
names = [n for p in runner._pools.values() for w in p.workers() for n in w.slots.names]
print(json.dumps({"pids": [w["pid"] for w in stats["workers"]], "segments": names}), flush=True)
time.sleep(120)
"""


def test_sigkilled_runner_leaves_no_worker_and_next_runner_sweeps(tmp_path: Path) -> None:
    script = tmp_path / "victim.py"
    script.write_text(_KILLED_RUNNER)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(FAULTY)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        report = json.loads(line)
        assert len(report["pids"]) == 2 and report["segments"]
        assert all(_alive(p) for p in report["pids"])
        proc.kill()
        proc.wait(timeout=10)
        assert _wait_for(lambda: not any(_alive(p) for p in report["pids"]))
        present = set(os.listdir("/dev/shm"))
        assert set(report["segments"]) <= present  # SIGKILL left them behind
        with Runner(_config()):
            pass
        assert not set(report["segments"]) & set(os.listdir("/dev/shm"))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
