"""The `step` call frame: pre_execute + execute in one round trip, in the worker and the Runner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.adapter_process import AdapterProcess

from procvision_algorithm_sdk.errors import ALGORITHM_EXCEPTION
from procvision_runner import Runner, RunnerConfig

MARKER = Path(__file__).resolve().parents[1] / "algos" / "runner" / "marker"


@pytest.fixture
def adapter(tmp_path: Path) -> Iterator[AdapterProcess]:
    with AdapterProcess(tmp_path) as proc:
        yield proc


def test_the_worker_offers_step_and_answers_pre_ahead_then_execute(
    adapter: AdapterProcess,
) -> None:
    assert "step" in adapter.hello["capabilities"]
    adapter.send(
        {
            "type": "call",
            "request_id": "q1",
            "phase": "step",
            "step_index": 1,
            "pid": "P1",
            "session": {"id": "s1", "context": {"product_code": "PC"}},
        }
    )
    pre = adapter.recv()
    execute = adapter.recv()
    assert pre["request_id"] == execute["request_id"] == "q1"
    assert pre["step_part"] == "pre" and pre["data"]["phase"] == "pre"
    assert "step_part" not in execute and execute["data"]["phase"] == "execute"
    # each frame is what its own call answers: pre's session change, then execute sees it
    assert pre["session_delta"]["set"]["pre_1"] == {"pid": "P1", "seen": True}
    assert execute["data"]["from_pre"] == {"pid": "P1", "seen": True}
    # the step's hooks ran once around both phases
    assert adapter.log_lines()[-2:] == ["on_step_start s1 1 PC", "on_step_finish s1 1 OK"]


def test_a_pre_that_fails_ends_the_step_frame_with_one_frame(adapter: AdapterProcess) -> None:
    frame = adapter.step("step", 1, user_params={"mode": "raise", "error": "ValueError"})
    assert frame["data"]["phase"] == "pre" and frame["error_code"] == ALGORITHM_EXCEPTION
    assert "step_part" not in frame
    adapter.ping()  # nothing else was queued: the next frame is the pong


def marked(box: tuple[int, int, int, int]) -> np.ndarray:
    frame = np.full((60, 80, 3), 30, np.uint8)
    x, y, w, h = box
    frame[y : y + h, x : x + w] = (255, 0, 0)
    return frame


@pytest.mark.parametrize("step_frame", [True, False])
def test_run_step_gives_the_same_results_with_and_without_the_step_frame(
    step_frame: bool,
) -> None:
    config = RunnerConfig(heartbeat_interval_ms=5000, step_frame=step_frame)
    with Runner(config) as runner:
        runner.load(MARKER)
        (worker,) = [w for p in runner._pools.values() for w in p.workers()]
        before = worker.calls
        out = runner.run_step("m1", 1, marked((5, 6, 7, 8)), session_id="board")
        frames = worker.calls - before
        ng = runner.run_step("m1", 1, marked((0, 0, 0, 0)), user_params={"min_pixels": 0})
    assert "step" in worker.capabilities
    assert frames == (1 if step_frame else 2)  # one round trip per step with the step frame
    pre, ex = out["pre_execute"], out["execute"]
    assert pre["status"] == "OK" and pre["message"] == "80x60", pre
    assert ex["data"]["result_status"] == "NG" and ex["data"]["defect_rects"][0]["x"] == 5
    assert set(pre["timings"]) >= {"queue_ms", "transfer_ms", "algorithm_ms", "total_ms"}
    assert ex["timings"]["queue_ms"] == 0.0 and pre["timings"]["queue_ms"] >= 0.0
    # a param out of range is refused before the worker; nothing reaches it
    assert ng["pre_execute"]["error_code"] == "1006" and ng["execute"] is None
