"""Sessions: state kept across worker restarts, reset, the idle TTL, per-session logs."""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

import pytest
from helpers.runner_kit import FAULTY, FRAME, ok, wait_for


@pytest.mark.slow
def test_session_survives_worker_restart(make_runner: Any) -> None:
    tracked = make_runner()
    runner = tracked.runner
    runner.load(FAULTY)
    first = runner.run_step(
        "f1", 1, FRAME, user_params={"mode": "remember", "tag": "board-A"}, session_id="s1"
    )
    old_pid = ok(first["execute"])["data"]["worker_pid"]
    os.kill(old_pid, signal.SIGKILL)
    assert wait_for(lambda: old_pid not in tracked.ready_pids() and tracked.ready_pids())
    second = runner.run_step("f1", 2, FRAME, session_id="s1")
    data = ok(second["execute"])["data"]
    assert data["worker_pid"] != old_pid
    assert data["recalled"] == "board-A"
    assert data["pre"] == 7  # pre of step 2 ran on the same worker, same session
    runner.reset("s1")
    third = runner.run_step("f1", 2, FRAME, session_id="s1")
    assert ok(third["execute"])["data"]["recalled"] is None
    assert runner.has_session("s1") and not runner.has_session("never-used")
    runner.close_session("s1")
    assert runner.stats()["sessions"] == 0
    assert not runner.has_session("s1")


def test_sessions_expire_after_idle_ttl(make_runner: Any) -> None:
    tracked = make_runner(session_ttl_s=0.2)
    runner = tracked.runner
    runner.load(FAULTY)
    runner.run_step("f1", 1, FRAME, user_params={"mode": "remember", "tag": "x"}, session_id="t")
    assert wait_for(lambda: not runner.has_session("t"), 10)
    assert runner.stats()["sessions"] == 0
    again = runner.run_step("f1", 2, FRAME, session_id="t")
    assert ok(again["execute"])["data"]["recalled"] is None


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
    assert wait_for(lambda: any("hello from execute" in r.getMessage() for r in caplog.records), 5)
