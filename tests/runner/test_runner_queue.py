"""Concurrent callers of one pool: each gets its own result; a full queue answers busy at once."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from helpers.runner_kit import FAULTY, FRAME, ok, wait_for


@pytest.mark.slow
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
        data = ok(outs[0]["execute"])["data"]
        n, i = (int(x) for x in tag[1:].split("-"))
        assert data["tag"] == tag
        assert data["pixel"] == (n * 50 + i) % 256
        pids.add(data["worker_pid"])
    assert len(pids) == 2
    assert runner.stats()["shm_bytes_in_use"] == 0


@pytest.mark.slow
def test_full_queue_answers_busy_at_once(make_runner: Any) -> None:
    tracked = make_runner(queue_size=0)
    runner = tracked.runner
    runner.load(FAULTY)
    slow: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: slow.update(runner.run_step("f1", 1, FRAME, user_params={"mode": "sleep"}))
    )
    thread.start()
    assert wait_for(lambda: any(w["busy"] for w in runner.stats()["workers"]))
    busy = runner.run_step("f1", 1, FRAME)["pre_execute"]
    thread.join()
    tracked.worker_pids()
    assert busy["error_code"] == "1005" and busy["retryable"] is True
    assert busy["data"]["busy"] is True and "busy" in busy["message"]
    assert slow["execute"]["error_code"] == "1005"
    assert runner.stats()["busy_rejections"] == 1
