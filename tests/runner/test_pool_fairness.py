"""Fair queues: with more callers than workers, every caller gets its turn (issue 13 item 2)."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import numpy as np
import pytest

from procvision_runner import Runner, RunnerConfig

NOOP = Path(__file__).resolve().parents[1] / "algos" / "runner" / "noop"
FRAME = np.full((8, 8, 3), 9, dtype=np.uint8)
CALLS_PER_THREAD = 100  # a shared budget of calls bounds the run, not a clock
# A 5 ms execute keeps OS scheduling noise (a loaded box wakes threads late) small against the
# call; the pool's order is what decides who gets the worker next.
EXECUTE_MS = "5"


@pytest.mark.slow
@pytest.mark.parametrize("threads", [3, 8])
def test_callers_share_two_workers_in_turn(threads: int) -> None:
    config = RunnerConfig(
        warmup_calls=0,
        warmup_shape=(8, 8, 3),
        queue_size=32,
        queue_timeout_ms=60000,  # a starved caller must show up as a low count, not a timeout
        heartbeat_interval_ms=1000,
        extra_env={"PROC_TEST_NOOP_EXECUTE_MS": EXECUTE_MS},
    )
    budget = CALLS_PER_THREAD * threads
    tickets = itertools.count()  # next() is atomic: no test lock that could itself starve a caller
    counts = [0] * threads
    codes: list[str | None] = []
    barrier = threading.Barrier(threads)
    with Runner(config) as runner:
        runner.load(NOOP, workers=2)

        def caller(n: int) -> None:
            barrier.wait()
            while next(tickets) < budget:
                out = runner.run_step("n1", 1, FRAME)
                result = out["execute"] or out["pre_execute"]
                if result["status"] == "OK":
                    counts[n] += 1  # only this thread writes counts[n]
                else:
                    codes.append(result["error_code"])

        workers = [threading.Thread(target=caller, args=(n,)) for n in range(threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        assert runner.stats()["busy_rejections"] == 0
    assert codes == [], f"calls failed: {codes}"
    mean = sum(counts) / threads
    assert sum(counts) == CALLS_PER_THREAD * threads
    spread = max(abs(c - mean) for c in counts) / mean
    assert spread <= 0.2, f"OK calls per thread {counts}: spread {spread:.0%} of the mean"
