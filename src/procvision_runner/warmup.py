"""Warm-up of a new worker: synthetic pre + execute calls through every slot of its ring."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from procvision_algorithm_sdk.contract import validate_user_params

from .config import RunnerConfig
from .states import WorkerState
from .worker import Worker, WorkerStartError

__all__ = ["warm_up"]


def warm_up(worker: Worker, cfg: RunnerConfig, info: dict[str, Any]) -> None:
    """Run synthetic pre+execute calls per step through every slot; results are discarded.

    All slots of the worker's ring are leased at once and the calls rotate over them, so
    every segment is allocated at the warm-up size, written by this process and attached by
    the worker before the first real call (which may land on any slot). Each call rewrites
    its slot like a real call does. With fewer warm-up calls than slots, extra rounds of the
    first step run until every slot has been used once. Sessions are throw-away ids.
    """
    pids = info.get("supported_pids") or []
    if cfg.warmup_calls <= 0 or not pids:
        return
    steps = [s for s in info.get("steps") or [] if isinstance(s, dict)] or [
        {"index": 1, "params": []}
    ]
    # Mid-grey, not zeros: np.zeros maps the kernel's zero page, so copying it would skip
    # the memory traffic a real frame causes.
    frame = np.full(cfg.warmup_shape, 128, dtype=np.uint8)
    height, width = frame.shape[:2]
    runs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for step in steps:
        params, problems = validate_user_params(step.get("params") or [], {}, width, height)
        if not problems:
            runs.extend((step, params) for _ in range(cfg.warmup_calls))
    if not runs:
        return
    ring = worker.ring
    slots: list[Any] = []
    try:
        for _ in range(ring.count):
            slots.append(ring.acquire(frame.nbytes, cfg.startup_timeout_ms / 1000))
        while len(runs) < len(slots):
            runs.append(runs[0])
        for number, (step, params) in enumerate(runs):
            slot = slots[number % len(slots)]
            meta = slot.write_frame(frame, "RGB")
            session = {"id": f"warmup-{uuid.uuid4().hex[:12]}", "context": {}}
            for phase, timeout in (
                ("pre", cfg.pre_execute_timeout_ms),
                ("execute", cfg.execute_timeout_ms),
            ):
                result = worker.call(
                    phase,
                    {
                        "step_index": step.get("index"),
                        "pid": str(pids[0]),
                        "session": session,
                        "user_params": params,
                        "shared_mem_id": slot.name,
                        "image_meta": meta,
                    },
                    timeout,
                )
                if worker.state != WorkerState.READY or worker.retire:
                    raise WorkerStartError(f"warm-up {phase}: {result.get('message')}")
                if result.get("status") != "OK":
                    break
    finally:
        for slot in slots:
            slot.release()
