"""Runner call benchmark: run_step on a no-op algorithm vs in-process and vs .npy file transport.

    .venv/bin/python benchmarks/runner_call.py [--iterations 200] [--big-iterations 40]

(a) floor: the same algorithm called in-process (pre_execute + execute) on the same frame, the
    frame already in a shared-memory segment (no copy, no process boundary).
(b) the existing implementation's path: the same frame protocol to a worker process, the frame
    saved per step to a temporary .npy file that the worker np.load()s for each phase.
(c) execute-only API (original SDK 0.3.x) at 1920x1200: run_step with a current and a guide
    frame (two slot copies, one execute round trip) against the same execute called in-process
    on the two arrays; its overhead is compared with the lifecycle call's overhead over (a),
    the two run_steps interleaved call by call in one Runner.
Prints p50/p99 and calls/s per size and the ratios. The first call after warm-up is the median
over --loads fresh Runners (each: load with warm-up, then one timed run_step) against the steady
p50 of back-to-back calls; a context line shows the p50 of calls spaced --gap-ms apart.
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
NOOP = ROOT / "tests" / "algos" / "runner" / "noop"
EXONLY_NOOP = ROOT / "tests" / "algos" / "runner" / "exonly_noop"
EXONLY_GOAL = 2.0  # execute-only overhead / lifecycle overhead (issue 12)
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(NOOP))
sys.path.insert(0, str(EXONLY_NOOP))

from procvision_algorithm_sdk import protocol  # noqa: E402
from procvision_algorithm_sdk.session import Session  # noqa: E402
from procvision_runner import Runner, RunnerConfig  # noqa: E402
from procvision_runner.slots import SlotRing  # noqa: E402

FIRST_CALL_GOAL = 1.2
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


def _load_and_call(shape: tuple[int, ...], frame: np.ndarray) -> tuple[Runner, float]:
    """A fresh Runner with the no-op package loaded (warm-up included); its first call in ms."""
    config = RunnerConfig(warmup_calls=3, warmup_shape=shape, heartbeat_interval_ms=5000)
    runner = Runner(config)
    try:
        runner.load(NOOP)
        t = time.perf_counter()
        out = runner.run_step("n1", 1, frame)
        first = (time.perf_counter() - t) * 1000
        assert out["execute"]["status"] == "OK", out
    except BaseException:
        runner.close()
        raise
    return runner, first


def bench_runner(
    shape: tuple[int, ...], iterations: int, loads: int, gap_ms: float
) -> tuple[list[float], dict[str, float], dict[str, float]]:
    """First-call latencies over `loads` fresh loads, the steady summary, the paced summary."""
    frame = np.random.default_rng(1).integers(0, 255, shape, dtype=np.uint8)
    firsts: list[float] = []
    for _ in range(loads - 1):
        runner, first = _load_and_call(shape, frame)
        runner.close()
        firsts.append(first)
    runner, first = _load_and_call(shape, frame)
    firsts.append(first)
    try:
        samples = []
        for _ in range(iterations):
            t = time.perf_counter()
            out = runner.run_step("n1", 1, frame)
            samples.append((time.perf_counter() - t) * 1000)
            assert out["execute"]["status"] == "OK"
        # Context: the same calls spaced like a line that waits for its next part.
        paced = []
        for _ in range(max(10, iterations // 4)):
            time.sleep(gap_ms / 1000)
            t = time.perf_counter()
            out = runner.run_step("n1", 1, frame)
            paced.append((time.perf_counter() - t) * 1000)
            assert out["execute"]["status"] == "OK"
    finally:
        runner.close()
    return firsts, summary(samples), summary(paced)


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


def bench_execute_only(
    shape: tuple[int, ...], iterations: int
) -> tuple[dict[str, float], dict[str, float], dict[str, float], dict[str, float]]:
    """Execute-only and lifecycle run_step interleaved call by call in one Runner (so load on
    the box hits both alike), and each algorithm called in-process: (exonly, exonly floor,
    lifecycle, lifecycle floor) summaries."""
    from exonly_noop_algo import ExecuteOnlyNoop

    rng = np.random.default_rng(2)
    cur = rng.integers(0, 255, shape, dtype=np.uint8)
    guide = rng.integers(0, 255, shape, dtype=np.uint8)
    info = [{"label": "1", "posList": [{"x": 10, "y": 10, "width": 100, "height": 100}]}]
    config = RunnerConfig(warmup_calls=3, warmup_shape=shape, heartbeat_interval_ms=5000)
    exonly: list[float] = []
    lifecycle: list[float] = []
    with Runner(config) as runner:
        runner.load(NOOP)
        key = runner.load(EXONLY_NOOP)
        runner.route(["e1"], key)
        for number in range(iterations + 3):
            t = time.perf_counter()
            out = runner.run_step(
                "e1", 1, cur, guide_frame=guide, step_desc="bench", guide_info=info
            )
            took = (time.perf_counter() - t) * 1000
            assert out["execute"]["status"] == "OK", out
            t = time.perf_counter()
            out = runner.run_step("n1", 1, cur)
            took_lifecycle = (time.perf_counter() - t) * 1000
            assert out["execute"]["status"] == "OK", out
            if number >= 3:  # the first calls attach the execute-only worker's two slots
                exonly.append(took)
                lifecycle.append(took_lifecycle)
    algo = ExecuteOnlyNoop()
    floor = []
    for _ in range(iterations):
        t = time.perf_counter()
        algo.execute(1, "bench", cur, guide, info)
        floor.append((time.perf_counter() - t) * 1000)
    return summary(exonly), summary(floor), summary(lifecycle), bench_inprocess(shape, iterations)


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
    parser.add_argument("--loads", type=int, default=7, help="fresh loads for the first call")
    parser.add_argument("--gap-ms", type=float, default=20.0, help="idle gap of the paced calls")
    parser.add_argument(
        "--execute-only", action="store_true", help="only row (c), the execute-only comparison"
    )
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; times in ms per run_step")
    if args.execute_only:
        shape = SIZES["1920x1200x3"]
        exonly, exonly_floor, lifecycle, lifecycle_floor = bench_execute_only(
            shape, args.iterations
        )
        overhead = (exonly["p50"] - exonly_floor["p50"], lifecycle["p50"] - lifecycle_floor["p50"])
        print(f"1920x1200x3 ({args.iterations} calls each, interleaved)")
        for name, row in (("execute-only", exonly), ("lifecycle", lifecycle)):
            print(f"  {name:14} run_step p50 {row['p50']:.3f} ms, p99 {row['p99']:.3f} ms")
        ratio = overhead[0] / overhead[1]
        verdict = "met" if ratio <= EXONLY_GOAL else "not met"
        print(
            f"  overhead over in-process p50: execute-only {overhead[0]:.3f} ms, lifecycle "
            f"{overhead[1]:.3f} ms = {ratio:.2f}x (goal <= {EXONLY_GOAL:g}x: {verdict})"
        )
        return
    for label, shape in SIZES.items():
        n = args.iterations if shape[0] < 2000 else args.big_iterations
        firsts, ours, paced = bench_runner(shape, n, args.loads, args.gap_ms)
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
        overhead_goal = " (goal at 1920x1200: <= 1 ms)" if shape[0] < 2000 else ""
        speedup_goal = " (goal at 20 MP: >= 10x)" if shape[0] >= 2000 else ""
        print(f"  overhead over (a), p50:     {ours['p50'] - floor['p50']:.3f} ms{overhead_goal}")
        print(f"  (b) / runner, p50:          {npy['p50'] / ours['p50']:.1f}x{speedup_goal}")
        first = statistics.median(firsts)
        ratio = first / ours["p50"]
        verdict = "met" if ratio <= FIRST_CALL_GOAL else "not met"
        print(
            f"  first call after warm-up:   median {first:.3f} ms over {len(firsts)} fresh loads "
            f"= {ratio:.2f}x steady p50 (goal <= {FIRST_CALL_GOAL}x: {verdict})"
        )
        print(f"    each load's first call:   {' '.join(f'{x:.3f}' for x in firsts)}")
        print(
            f"  context, calls {args.gap_ms:g} ms apart: p50 {paced['p50']:.3f} ms "
            f"= {paced['p50'] / ours['p50']:.2f}x the back-to-back p50"
        )
        if shape[0] < 2000:
            exonly, exonly_floor, lifecycle, lifecycle_floor = bench_execute_only(shape, n)
            lifecycle_overhead = lifecycle["p50"] - lifecycle_floor["p50"]
            exonly_overhead = exonly["p50"] - exonly_floor["p50"]
            ratio = exonly_overhead / lifecycle_overhead
            verdict = "met" if ratio <= EXONLY_GOAL else "not met"
            print(f"  (c) execute-only (cur + guide frames) and lifecycle, interleaved ({n} each)")
            for name, row in (
                ("    execute-only run_step", exonly),
                ("    in-process execute", exonly_floor),
                ("    lifecycle run_step", lifecycle),
                ("    (a) in-process floor", lifecycle_floor),
            ):
                print(f"  {name:28}{row['p50']:9.3f}{row['p99']:9.3f}{row['per_s']:10.1f}")
            print(
                f"    overhead p50 {exonly_overhead:.3f} ms = {ratio:.2f}x the lifecycle "
                f"overhead {lifecycle_overhead:.3f} ms (goal <= {EXONLY_GOAL:g}x: {verdict})"
            )


if __name__ == "__main__":
    main()
