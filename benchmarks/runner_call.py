"""Runner call benchmark: run_step on a no-op algorithm vs in-process and vs .npy file transport.

    .venv/bin/python benchmarks/runner_call.py [--iterations 200] [--big-iterations 40]

(a) floor: the same algorithm called in-process (pre_execute + execute) on the same frame, the
    frame already in a shared-memory segment (no copy, no process boundary).
(b) the existing implementation's path: the same frame protocol to a worker process, the frame
    saved per step to a temporary .npy file that the worker np.load()s for each phase.
Prints p50/p99 and calls/s per size, the first call after warm-up, and the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
NOOP = ROOT / "tests" / "runner_algos" / "noop"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(NOOP))

from procvision_algorithm_sdk import protocol  # noqa: E402
from procvision_algorithm_sdk.session import Session  # noqa: E402
from procvision_runner import Runner, RunnerConfig  # noqa: E402
from procvision_runner.slots import SlotRing  # noqa: E402

SIZES = {"1920x1200x3": (1200, 1920, 3), "5472x3648x3": (3648, 5472, 3)}

# The (b) worker: the old transport, one np.load per phase from a path in the call frame.
NPY_WORKER = """
import os, sys
import numpy as np
sys.path.insert(0, {src!r})
from procvision_algorithm_sdk import protocol
fin, fout = sys.stdin.buffer, sys.stdout.buffer
while True:
    msg = protocol.read_frame(fin)
    if msg is None:
        break
    image = np.load(msg["data"]["path"])
    if msg["phase"] == "pre":
        out = {{"status": "OK", "message": "", "data": {{}}}}
    else:
        out = {{"status": "OK", "data": {{"result_status": "OK", "h": int(image.shape[0])}}}}
    answer = protocol.result(msg["request_id"], out["status"], "", None, out["data"])
    protocol.write_frame(fout, answer)
"""


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50": statistics.median(samples),
        "p99": pct(samples, 0.99),
        "per_s": 1000.0 / statistics.mean(samples),
    }


def bench_runner(shape: tuple[int, ...], iterations: int) -> tuple[float, dict[str, float]]:
    frame = np.random.default_rng(1).integers(0, 255, shape, dtype=np.uint8)
    config = RunnerConfig(warmup_calls=3, warmup_shape=shape, heartbeat_interval_ms=5000)
    with Runner(config) as runner:
        runner.load(NOOP)
        t = time.perf_counter()
        out = runner.run_step("n1", 1, frame)
        first = (time.perf_counter() - t) * 1000
        assert out["execute"]["status"] == "OK", out
        samples = []
        for _ in range(iterations):
            t = time.perf_counter()
            out = runner.run_step("n1", 1, frame)
            samples.append((time.perf_counter() - t) * 1000)
            assert out["execute"]["status"] == "OK"
    return first, summary(samples)


def bench_inprocess(shape: tuple[int, ...], iterations: int) -> dict[str, float]:
    from noop_algo import Noop

    frame = np.random.default_rng(1).integers(0, 255, shape, dtype=np.uint8)
    algo = Noop()
    session = Session("bench")
    with SlotRing("bench-inproc", 1) as ring:
        slot = ring.acquire(frame.nbytes, 5)
        meta = slot.write_frame(frame)
        samples = []
        for _ in range(iterations + 3):
            t = time.perf_counter()
            algo.pre_execute(1, "n1", session, {}, slot.name, meta)
            algo.execute(1, "n1", session, {}, slot.name, meta)
            samples.append((time.perf_counter() - t) * 1000)
        slot.release()
        from procvision_algorithm_sdk import shared_memory

        cache = getattr(shared_memory, "_cache", None)
        if cache is not None and hasattr(cache, "clear"):
            cache.clear()
    return summary(samples[3:])


def bench_npy(shape: tuple[int, ...], iterations: int) -> dict[str, float]:
    frame = np.random.default_rng(1).integers(0, 255, shape, dtype=np.uint8)
    code = NPY_WORKER.format(src=str(ROOT / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for i in range(iterations + 3):
                t = time.perf_counter()
                path = os.path.join(tmp, f"frame_{i}.npy")
                np.save(path, frame)
                for phase in ("pre", "execute"):
                    protocol.write_frame(
                        proc.stdin.fileno(), protocol.call(str(i), phase, step_index=1, path=path)
                    )
                    answer = protocol.read_frame(proc.stdout.fileno())
                    assert answer is not None and answer["status"] == "OK"
                os.unlink(path)
                samples.append((time.perf_counter() - t) * 1000)
        finally:
            proc.stdin.close()
            proc.wait(timeout=30)
    return summary(samples[3:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--big-iterations", type=int, default=40)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; times in ms per run_step")
    for label, shape in SIZES.items():
        n = args.iterations if shape[0] < 2000 else args.big_iterations
        first, ours = bench_runner(shape, n)
        floor = bench_inprocess(shape, n)
        npy = bench_npy(shape, n)
        print(f"\n{label}  ({n} calls each)")
        print(f"  {'':28}{'p50':>9}{'p99':>9}{'calls/s':>10}")
        for name, row in (
            ("runner run_step (shm)", ours),
            ("(a) in-process floor", floor),
            ("(b) protocol + .npy files", npy),
        ):
            print(f"  {name:28}{row['p50']:9.3f}{row['p99']:9.3f}{row['per_s']:10.1f}")
        print(f"  overhead over (a), p50:     {ours['p50'] - floor['p50']:.3f} ms")
        print(f"  (b) / runner, p50:          {npy['p50'] / ours['p50']:.1f}x")
        print(
            f"  first call after warm-up:   {first:.3f} ms = {first / ours['p50']:.2f}x steady p50"
        )


if __name__ == "__main__":
    main()
