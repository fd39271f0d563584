"""The crash-loop breaker goes half-open after a cool-down (issue 13 item 7)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from procvision_algorithm_sdk.errors import is_retryable
from procvision_runner import Runner, RunnerConfig

FAULTY = Path(__file__).resolve().parents[1] / "algos" / "runner" / "faulty"
FRAME = np.full((8, 8, 3), 3, dtype=np.uint8)


def _wait_for(predicate: Any, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def _package(tmp_path: Path) -> Path:
    root = tmp_path / "flaky"
    shutil.copytree(FAULTY, root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest.update(name="flaky", entry_point="faulty_algo:SetupFailsWhileFlagged")
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _crash(runner: Runner) -> None:
    out = runner.run_step("f1", 1, FRAME, user_params={"mode": "segfault"})
    assert (out["execute"] or out["pre_execute"])["status"] == "ERROR"


@pytest.mark.slow
def test_breaker_opens_tries_one_worker_after_cooldown_and_closes(tmp_path: Path) -> None:
    flag = tmp_path / "model-store-down"
    config = RunnerConfig(
        warmup_calls=0,
        warmup_shape=(8, 8, 3),
        heartbeat_interval_ms=500,
        kill_grace_ms=500,
        restart_backoff_initial_ms=20,
        restart_backoff_max_ms=100,
        crash_loop_failures=3,
        crash_loop_cooldown_s=1.0,
        queue_timeout_ms=20000,
        extra_env={"PROC_TEST_FAIL_FLAG": str(flag)},
    )
    with Runner(config) as runner:
        runner.load(_package(tmp_path))

        def package() -> dict[str, Any]:
            return runner.packages()[0]

        for _ in range(3):
            _wait_for(lambda: package()["state"] == "READY")
            _crash(runner)
        assert _wait_for(lambda: package()["state"] == "FAILED")
        assert package()["breaker"] in ("open", "half_open")

        # Open: answered at once, saying when the next trial is; retryable per the contract.
        flag.touch()
        refused = runner.run_step("f1", 1, FRAME)["pre_execute"]
        assert refused["status"] == "ERROR" and "crash loop" in refused["message"]
        assert refused["retryable"] is is_retryable(refused["error_code"])
        assert refused["error_code"] == "1005" and refused["retryable"] is True
        assert (
            "next trial" in refused["message"] or "trial worker is starting" in refused["message"]
        )
        assert "next_trial_in_ms" in refused["data"]

        # A trial while the model store is down fails and re-opens the breaker.
        assert _wait_for(lambda: runner.stats()["breaker_trials"] >= 1)
        assert _wait_for(lambda: "trial worker failed" in (package()["error"]["message"]))
        assert package()["state"] == "FAILED"
        assert _wait_for(lambda: package()["breaker"] == "open")
        again = runner.run_step("f1", 1, FRAME)["pre_execute"]
        assert "model store unavailable" in again["message"]
        assert again["data"]["next_trial_at_ms"] >= int(time.time() * 1000) - 1000

        # The store is back: the next trial closes the breaker and calls are served again.
        flag.unlink()
        assert _wait_for(lambda: package()["state"] == "READY")
        assert package()["breaker"] == "closed"
        ok = runner.run_step("f1", 1, FRAME, user_params={"tag": "back"})["execute"]
        assert ok is not None and ok["status"] == "OK" and ok["data"]["tag"] == "back"
        trials = runner.stats()["breaker_trials"]
        assert trials >= 2

        # Closed on probation until a call succeeds; it did, so one crash does not re-open...
        _crash(runner)
        assert _wait_for(lambda: package()["state"] == "READY" and len(_ready(runner)) == 1)
        assert package()["breaker"] == "closed"


def _ready(runner: Runner) -> list[int]:
    return [w["pid"] for w in runner.stats()["workers"] if w["state"] == "READY"]


@pytest.mark.slow
def test_a_trial_worker_that_fails_before_any_call_succeeds_reopens_at_once(
    tmp_path: Path,
) -> None:
    config = RunnerConfig(
        warmup_calls=0,
        warmup_shape=(8, 8, 3),
        heartbeat_interval_ms=500,
        kill_grace_ms=500,
        restart_backoff_initial_ms=20,
        restart_backoff_max_ms=100,
        crash_loop_failures=2,
        crash_loop_cooldown_s=0.5,
        queue_timeout_ms=20000,
        extra_env={"PROC_TEST_FAIL_FLAG": str(tmp_path / "never")},
    )
    with Runner(config) as runner:
        runner.load(_package(tmp_path))

        def state() -> str:
            return str(runner.packages()[0]["state"])

        for _ in range(2):
            _wait_for(lambda: state() == "READY")
            _crash(runner)
        assert _wait_for(lambda: state() == "FAILED")
        assert _wait_for(lambda: state() == "READY")  # the trial worker started: closed
        _crash(runner)  # its first call crashes it: probation re-opens the breaker at once
        assert _wait_for(lambda: state() == "FAILED")
        assert runner.packages()[0]["breaker"] in ("open", "half_open")
        assert runner.stats()["crash_loops"] == 2
