"""Starting a package: start failures mark it FAILED, heartbeats during setup, protocol
versions, warm-up."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from helpers.runner_kit import ALGOS, FAULTY, FRAME, alive, ok, package_copy, wait_for


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
    root = package_copy(tmp_path, "broken", entry)
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


@pytest.mark.slow
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
    runner.load(package_copy(tmp_path, "slow", "faulty_algo:SlowSetup"))
    package = runner.packages()[0]
    assert package["state"] == "READY", package.get("error")
    ok(runner.run_step("f1", 1, FRAME, user_params={"tag": "warm"})["execute"])
    assert runner.stats()["restarts"] == 0


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
    assert wait_for(lambda: not alive(int(pid_file.read_text())))
    assert runner.stats()["restarts"] == 0


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
    ok(runner.run_step("f1", 1, FRAME)["execute"])
