"""What the Runner tests share: the faulty package, a fast config, a tracked Runner, waits."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from procvision_algorithm_sdk.segment import SEGMENT_PREFIX
from procvision_runner import Runner, RunnerConfig
from procvision_runner.proctable import read_proc

ALGOS = Path(__file__).resolve().parents[1] / "algos" / "runner"
FAULTY = ALGOS / "faulty"
FRAME = np.full((24, 32, 3), 7, dtype=np.uint8)


def runner_config(**overrides: Any) -> RunnerConfig:
    """Short deadlines and backoff, no warm-up: faults show quickly, nothing waits long."""
    values: dict[str, Any] = {
        "execute_timeout_ms": 1500,
        "pre_execute_timeout_ms": 1500,
        "startup_timeout_ms": 20000,
        "setup_timeout_ms": 20000,
        "queue_timeout_ms": 20000,
        "kill_grace_ms": 500,
        "heartbeat_interval_ms": 500,
        "heartbeat_grace_ms": 1000,
        "restart_backoff_initial_ms": 20,
        "restart_backoff_max_ms": 200,
        "warmup_calls": 0,
        "warmup_shape": (16, 16, 3),
    }
    values.update(overrides)
    return RunnerConfig(**values)


def alive(pid: int) -> bool:
    """Whether `pid` is a live (non-zombie) process."""
    proc = read_proc(pid)
    return proc is not None and not proc.zombie


def our_segments(pid: int | None = None) -> set[str]:
    """The shared-memory segments a process (this one by default) has in /dev/shm."""
    prefix = f"{SEGMENT_PREFIX}{os.getpid() if pid is None else pid}_"
    return {n for n in os.listdir("/dev/shm") if n.startswith(prefix)}


def wait_for(predicate: Callable[[], Any], timeout_s: float = 20.0) -> bool:
    """Poll `predicate` until it holds or the deadline passes; its last value as a bool."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


class Tracked:
    """A Runner plus every worker pid it ever reported, checked clean after close()."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.pids: set[int] = set()

    def worker_pids(self) -> list[int]:
        pids = [w["pid"] for w in self.runner.stats()["workers"] if w["pid"]]
        self.pids.update(pids)
        return pids

    def ready_pids(self) -> list[int]:
        pids = [
            w["pid"] for w in self.runner.stats()["workers"] if w["state"] == "READY" and w["pid"]
        ]
        self.pids.update(pids)
        return pids

    def calls(self) -> int:
        return sum(w["calls"] for w in self.runner.stats()["workers"])


def package_copy(tmp_path: Path, name: str, entry: str, pids: list[str] | None = None) -> Path:
    """A copy of the faulty package under another name/entry point."""
    root = tmp_path / name
    shutil.copytree(FAULTY, root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest.update(name=name, entry_point=entry)
    if pids is not None:
        manifest["supported_pids"] = pids
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def ok(result: dict[str, Any] | None) -> dict[str, Any]:
    """Assert a phase result is OK and return it."""
    assert result is not None
    assert result["status"] == "OK", result
    return result
