"""The restart backoff of a pool: each worker failure doubles the delay up to the cap; a
successful call starts it over. Real workers crash (SIGSEGV) and are replaced."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers.runner_kit import FAULTY, FRAME, Tracked, ok, wait_for


def _crash_and_wait_for_the_replacement(tracked: Tracked, crashes: int) -> int:
    """Crash the one worker with a call (execute alone: no OK phase resets the backoff) and
    wait until the pool counted it and started its replacement; the backoff it recorded."""
    runner = tracked.runner
    assert wait_for(lambda: len(tracked.ready_pids()) == 1)
    result = runner.execute("f1", 1, FRAME, user_params={"mode": "segfault"})
    assert result["status"] == "ERROR" and "SIGSEGV" in result["message"], result
    # restarts is counted when the replacement starts, after the failure set the backoff
    assert wait_for(lambda: runner.stats()["restarts"] >= crashes)
    return int(runner.packages()[0]["restart_backoff_ms"])


@pytest.mark.slow
def test_restart_backoff_doubles_per_failure_up_to_the_cap_and_resets_after_success(
    make_runner: Callable[..., Tracked],
) -> None:
    tracked = make_runner(
        restart_backoff_initial_ms=40,
        restart_backoff_max_ms=160,
        crash_loop_failures=100,  # the breaker stays closed: only the backoff is at work
    )
    runner = tracked.runner
    runner.load(FAULTY)
    assert runner.packages()[0]["restart_backoff_ms"] == 0  # no failure yet

    delays = [_crash_and_wait_for_the_replacement(tracked, n) for n in range(1, 5)]
    assert delays == [40, 80, 160, 160]
    stats: dict[str, Any] = runner.stats()
    assert (stats["crashes"], stats["restarts"], stats["crash_loops"]) == (4, 4, 0)
    assert runner.packages()[0]["state"] == "READY"

    # A call that completes normally: the next failure starts from the initial delay again.
    assert wait_for(lambda: len(tracked.ready_pids()) == 1)
    ok(runner.execute("f1", 1, FRAME, user_params={"tag": "fine"}))
    assert _crash_and_wait_for_the_replacement(tracked, 5) == 40
    ok(runner.run_step("f1", 1, FRAME, user_params={"tag": "after"})["execute"])
