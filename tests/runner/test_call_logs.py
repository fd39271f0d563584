"""Issue 16 item 5: every stderr line a call writes is the call's when run_step returns.

stderr and the protocol are two pipes read by two threads; the adapter closes each call's output
with a log-mark line, and the Runner reads up to it before the call ends (protocol.LOG_MARKS).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from procvision_runner import Runner, RunnerConfig

FAULTY = Path(__file__).resolve().parents[1] / "algos" / "runner" / "faulty"
FRAME = np.full((24, 32, 3), 7, dtype=np.uint8)


def test_each_call_has_all_its_lines_when_it_returns() -> None:
    config = RunnerConfig(workers_per_package=1, warmup_calls=0)
    with Runner(config) as runner:
        runner.load(FAULTY)
        for n in range(25):  # without the mark, lines read after the result went to no session
            session = f"printing-{n}"
            result = runner.run_step(
                "f1", 1, FRAME, user_params={"mode": "print", "tag": str(n)}, session_id=session
            )
            assert result["execute"]["status"] == "OK", result
            lines = [r["message"] for r in runner.session_logs(session)]
            assert f"printed {n}" in lines and f"partial {n}" in lines, (n, lines)
            mine = [r for r in runner.session_logs(session) if r.get("stream") == "text"]
            assert all(isinstance(r["timestamp_ms"], int) for r in mine), mine
            assert not any("log-mark" in line for line in lines), lines
