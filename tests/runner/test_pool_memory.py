"""Memory bounds per worker: recycle above max_worker_rss_mb, kill above the hard limit (item 8)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.runner_kit import alive

from procvision_runner import Runner, RunnerConfig, RunnerError
from procvision_runner.memory import rss_bytes

FAULTY = Path(__file__).resolve().parents[1] / "algos" / "runner" / "faulty"
FRAME = np.full((8, 8, 3), 5, dtype=np.uint8)


def _config(**overrides: Any) -> RunnerConfig:
    values: dict[str, Any] = {
        "warmup_calls": 0,
        "warmup_shape": (8, 8, 3),
        "heartbeat_interval_ms": 500,
        "heartbeat_grace_ms": 5000,  # a loaded box may delay pongs while pages are touched
        "kill_grace_ms": 500,
        "restart_backoff_initial_ms": 20,
        "queue_timeout_ms": 30000,
        "execute_timeout_ms": 30000,
    }
    values.update(overrides)
    return RunnerConfig(**values)


def _wait_for(predicate: Any, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


@pytest.mark.slow
def test_worker_above_its_rss_bound_is_recycled_without_a_failed_call() -> None:
    # The bound comes from the package's own table (the Runner-wide value stays off).
    config = _config(package_limits={"faulty": {"max_worker_rss_mb": 200}})
    with Runner(config) as runner:
        runner.load(FAULTY)
        [old] = [w["pid"] for w in runner.stats()["workers"]]
        baseline = rss_bytes(old)
        assert baseline is not None and baseline < 200 << 20
        results: list[dict[str, Any]] = []
        stop = threading.Event()

        def steady_caller() -> None:  # calls all through the recycle: none may fail
            while not stop.is_set():
                results.append(runner.run_step("f1", 1, FRAME, user_params={"tag": "steady"}))

        grown = runner.run_step("f1", 1, FRAME, user_params={"mode": "grow", "count": 300})
        assert grown["execute"]["status"] == "OK", grown
        caller = threading.Thread(target=steady_caller)
        caller.start()
        try:
            assert _wait_for(lambda: runner.stats()["memory_recycles"] == 1)
            assert _wait_for(lambda: not alive(old)), "the bloated worker was not shut down"
        finally:
            stop.set()
            caller.join()
        [new] = [w["pid"] for w in runner.stats()["workers"]]
        assert new != old
        new_rss = rss_bytes(new)
        assert new_rss is not None and new_rss < 200 << 20
        assert results, "no call ran during the recycle"
        failed = [r for r in results if (r["execute"] or r["pre_execute"])["status"] != "OK"]
        assert failed == []
        after = runner.run_step("f1", 1, FRAME, user_params={"tag": "after"})["execute"]
        assert after["status"] == "OK" and after["data"]["worker_pid"] == new
        stats = runner.stats()
        assert stats["memory_recycles"] == 1 and stats["crashes"] == 0 and stats["restarts"] == 0


@pytest.mark.slow
def test_worker_above_the_hard_limit_is_killed_and_the_call_answers_1004() -> None:
    with Runner(_config(worker_memory_limit_mb=250)) as runner:
        runner.load(FAULTY)
        [old] = [w["pid"] for w in runner.stats()["workers"]]
        out = runner.run_step("f1", 1, FRAME, user_params={"mode": "balloon", "count": 800})
        result = out["execute"]
        assert result is not None and result["status"] == "ERROR"
        assert result["error_code"] == "1004" and result["retryable"] is False
        assert "hard limit of 250 MB" in result["message"]
        assert _wait_for(lambda: not alive(old))
        assert _wait_for(lambda: any(w["state"] == "READY" for w in runner.stats()["workers"]))
        again = runner.run_step("f1", 1, FRAME, user_params={"tag": "again"})["execute"]
        assert again["status"] == "OK" and again["data"]["worker_pid"] != old
        assert runner.stats()["memory_kills"] == 1


def test_memory_limits_are_checked_in_config() -> None:
    for bad in (
        {"max_worker_rss_mb": -1},
        {"worker_memory_limit_mb": "2G"},
        {"package_limits": {"faulty": {"max_rss": 5}}},
        {"package_limits": {"faulty": {"max_worker_rss_mb": True}}},
    ):
        with pytest.raises(RunnerError) as info:
            RunnerConfig.from_dict(bad)
        assert info.value.error_code == "1006"
