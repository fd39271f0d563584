"""What a worker gets and leaves: a filtered environment; nothing left after a SIGKILLed Runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers.runner_kit import FAULTY, alive, runner_config, wait_for

from procvision_runner import Runner


def test_worker_environment_is_filtered(make_runner: Any, monkeypatch: Any) -> None:
    from procvision_runner.worker import worker_env

    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    config = runner_config(extra_env={"CUDA_VISIBLE_DEVICES": "0"})
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
        assert all(alive(p) for p in report["pids"])
        proc.kill()
        proc.wait(timeout=10)
        assert wait_for(lambda: not any(alive(p) for p in report["pids"]))
        present = set(os.listdir("/dev/shm"))
        assert set(report["segments"]) <= present  # SIGKILL left them behind
        with Runner(runner_config()):
            pass
        assert not set(report["segments"]) & set(os.listdir("/dev/shm"))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
