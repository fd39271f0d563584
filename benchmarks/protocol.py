"""Protocol round trip: one adapter call on a no-op algorithm vs a bare length-prefixed ping-pong.

Both sides run in one process pair kind: this process writes to a child's stdin pipe and reads
its stdout pipe. The floor child only echoes length-prefixed frames (no JSON, no algorithm); the
adapter child decodes the call, pre-attaches the image slot, runs the no-op execute, checks the
result and answers with a full result frame. Rounds alternate between the two so machine noise
hits both alike. Goal: adapter p50 at most 3x the floor p50. Context lines (no goal): a JSON echo
and a "threaded echo" that has the adapter's required reader-thread -> main-thread shape.

Usage: .venv/bin/python benchmarks/protocol.py [--rounds 5] [--calls 400]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

from procvision_algorithm_sdk import protocol
from procvision_runner.slots import SlotRing

GOAL_RATIO = 3.0

NOOP_ALGORITHM = textwrap.dedent(
    """
    from procvision_algorithm_sdk import BaseAlgorithm


    class Noop(BaseAlgorithm):
        def get_info(self):
            return {"name": "noop", "version": "1.0.0", "supported_pids": ["P"], "steps": []}

        def pre_execute(self, step_index, pid, session, user_params, shared_mem_id, image_meta):
            return {"status": "OK", "message": ""}

        def execute(self, step_index, pid, session, user_params, shared_mem_id, image_meta):
            return {"status": "OK", "data": {"result_status": "OK"}}
    """
)

# The floor: read a 4-byte big-endian length and that many bytes, write the same frame back.
ECHO_CHILD = textwrap.dedent(
    """
    import os, struct
    def read_exact(n):
        parts = []
        while n:
            chunk = os.read(0, n)
            if not chunk:
                return None
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)
    while True:
        header = read_exact(4)
        if header is None:
            break
        body = read_exact(struct.unpack(">I", header)[0])
        if body is None:
            break
        data = header + body
        while data:
            data = data[os.write(1, data):]
    """
)

# Context only (not the goal's floor): the same echo, but decoding and re-encoding the JSON.
JSON_ECHO_CHILD = textwrap.dedent(
    """
    from procvision_algorithm_sdk import protocol
    while True:
        message = protocol.read_frame(0)
        if message is None:
            break
        protocol.write_frame(1, message)
    """
)

# Context only: the adapter's required two-thread shape with nothing else. A reader thread decodes
# each frame from a buffered stream and hands it to the main thread through a queue.SimpleQueue;
# the main thread encodes and writes the answer (the same message back).
THREADED_ECHO_CHILD = textwrap.dedent(
    """
    import os, queue, threading
    from procvision_algorithm_sdk import protocol
    calls = queue.SimpleQueue()
    def read_loop():
        stream = os.fdopen(0, "rb", buffering=1 << 16, closefd=False)
        while True:
            message = protocol.read_frame(stream)
            calls.put(message)
            if message is None:
                return
    threading.Thread(target=read_loop, daemon=True).start()
    while True:
        message = calls.get()
        if message is None:
            break
        protocol.write_frame(1, message)
    """
)


def _read_exact(fd: int, size: int) -> bytes:
    parts: list[bytes] = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            raise EOFError("child closed its stdout")
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def _spawn(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )


def floor_round(proc: subprocess.Popen[bytes], frame: bytes, calls: int) -> list[float]:
    """Round trips (ms) of echoing `frame` through the floor child."""
    assert proc.stdin is not None and proc.stdout is not None
    out_fd, in_fd = proc.stdin.fileno(), proc.stdout.fileno()
    samples: list[float] = []
    for _ in range(calls):
        start = time.perf_counter()
        os.write(out_fd, frame)
        header = _read_exact(in_fd, 4)
        _read_exact(in_fd, int.from_bytes(header, "big"))
        samples.append((time.perf_counter() - start) * 1000.0)
    return samples


def adapter_round(
    proc: subprocess.Popen[bytes], fields: dict[str, Any], calls: int, counter: list[int]
) -> list[float]:
    """Round trips (ms) of an execute call, client-side encode and decode included."""
    assert proc.stdin is not None and proc.stdout is not None
    out_fd, in_fd = proc.stdin.fileno(), proc.stdout.fileno()
    samples: list[float] = []
    for _ in range(calls):
        counter[0] += 1
        start = time.perf_counter()
        protocol.write_frame(out_fd, protocol.call(f"b{counter[0]}", "execute", **fields))
        answer = protocol.read_frame(in_fd)
        samples.append((time.perf_counter() - start) * 1000.0)
        if answer is None or answer.get("status") != "OK":
            raise RuntimeError(f"unexpected answer: {answer}")
    return samples


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100.0 * (len(ordered) - 1))))
    return ordered[index]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print p50/p99 of every side and the ratios to the floor."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=400, help="calls per round and side")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1024)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp, SlotRing("bench-protocol", count=1) as ring:
        Path(tmp, "noop_bench_algo.py").write_text(NOOP_ALGORITHM, encoding="utf-8")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [tmp, *sys.path])))
        image = np.random.default_rng(1).integers(
            0, 255, (args.height, args.width, 3), dtype=np.uint8
        )
        slot = ring.acquire(image.nbytes, timeout=5.0)
        meta = slot.write_frame(image, "RGB")
        fields: dict[str, Any] = {
            "step_index": 1,
            "pid": "P",
            "session": {"id": "bench", "context": {"product_code": "X"}},
            "user_params": {"threshold": 0.5},
            "shared_mem_id": slot.name,
            "image_meta": meta,
        }
        call_bytes = protocol.encode_frame(protocol.call("b0", "execute", **fields))
        adapter = _spawn(
            [
                sys.executable,
                "-m",
                "procvision_algorithm_sdk.adapter",
                "--entry",
                "noop_bench_algo:Noop",
            ],
            env,
        )
        floor = _spawn([sys.executable, "-c", ECHO_CHILD])
        json_echo = _spawn([sys.executable, "-c", JSON_ECHO_CHILD], env)
        threaded_echo = _spawn([sys.executable, "-c", THREADED_ECHO_CHILD], env)
        try:
            assert adapter.stdout is not None
            hello = protocol.read_frame(adapter.stdout.fileno())
            if not hello or hello.get("type") != "hello":
                raise RuntimeError(f"adapter did not start: {hello}")
            counter = [0]
            adapter_round(adapter, fields, 50, counter)  # warm-up: setup, attach, caches
            floor_round(floor, call_bytes, 50)
            floor_round(json_echo, call_bytes, 50)
            floor_round(threaded_echo, call_bytes, 50)
            ours: list[float] = []
            base: list[float] = []
            json_base: list[float] = []
            threaded_base: list[float] = []
            worker_only: list[float] = []
            for _ in range(args.rounds):
                # the adapter's own share: the same pre-encoded call, the answer read undecoded
                worker_only += floor_round(adapter, call_bytes, args.calls)
                base += floor_round(floor, call_bytes, args.calls)
                json_base += floor_round(json_echo, call_bytes, args.calls)
                threaded_base += floor_round(threaded_echo, call_bytes, args.calls)
                ours += adapter_round(adapter, fields, args.calls, counter)
        finally:
            for proc in (adapter, floor, json_echo, threaded_echo):
                assert proc.stdin is not None
                proc.stdin.close()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
                if proc.stdout is not None:
                    proc.stdout.close()
            slot.release()

    print(
        f"image slot {args.width}x{args.height} RGB, call frame {len(call_bytes)} bytes, "
        f"{args.rounds} rounds x {args.calls} calls per side"
    )
    print(f"{'':28}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    rows = (
        ("floor (bare ping-pong)", base),
        ("json echo (context)", json_base),
        ("threaded echo (context)", threaded_base),
        ("adapter, pre-encoded call", worker_only),
        ("adapter execute call", ours),
    )
    for label, samples in rows:
        print(
            f"{label:28}{percentile(samples, 50):10.4f}{percentile(samples, 99):10.4f}"
            f"{statistics.fmean(samples):10.4f}"
        )
    ratio50 = percentile(ours, 50) / percentile(base, 50)
    ratio99 = percentile(ours, 99) / percentile(base, 99)
    verdict = "meets" if ratio50 <= GOAL_RATIO else "misses"
    own50 = percentile(worker_only, 50) / percentile(base, 50)
    json50 = percentile(ours, 50) / percentile(json_base, 50)
    print(
        f"full call vs floor: p50 {ratio50:.2f}x, p99 {ratio99:.2f}x "
        f"(goal p50 <= {GOAL_RATIO:.0f}x: {verdict})"
    )
    print(f"adapter alone (pre-encoded call, undecoded answer) vs floor: p50 {own50:.2f}x")
    print(f"context: full call p50 is {json50:.2f}x a JSON echo that decodes and re-encodes")
    threaded50 = percentile(threaded_base, 50)
    print(
        f"context: the two-thread shape alone (threaded echo) is "
        f"{threaded50 / percentile(base, 50):.2f}x the floor; the full call is "
        f"{percentile(ours, 50) / threaded50:.2f}x the threaded echo"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
