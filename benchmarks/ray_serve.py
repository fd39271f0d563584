"""Ray Serve benchmark: the Runner alone vs through a DeploymentHandle vs over Ray's HTTP proxy.

    .venv/bin/python benchmarks/ray_serve.py [--iterations 60] [--clients 4] [--calls 120]

One no-op step (pre_execute + execute, tests/algos/runner/noop as a real package zip) on a
1920x1200x3 frame, side by side in one run, the three paths interleaved round by round:
  alone   in-process `NodeRunner.run_step` (the frame copied into the worker's slot)
  handle  `handle.run_step.remote(frame)` to a replica on a real two-node local Ray cluster
          (the frame through Ray's object store, copied once into the replica's slot)
  http    `POST /inspect` with a `raw` part through Ray's HTTP proxy (on the head node)
p50/p99 in ms and calls/s with one caller, the ratios to `alone`; then throughput through the
handle with --clients caller threads and 1 vs 2 replicas (one per simulated node), and its
ratio. Both nodes are `ray start` processes on 127.0.0.1 (tests/helpers/ray_cluster.py).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
NOOP = ROOT / "tests" / "algos" / "runner" / "noop"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from helpers.package_zips import EXAMPLE, make_package_zip  # noqa: E402
from helpers.ray_cluster import LocalRayCluster, free_port  # noqa: E402

from procvision_runner.ray.node import NodeRunner  # noqa: E402
from procvision_runner.ray.plan import parse_user_config  # noqa: E402

SHAPE = (1200, 1920, 3)
PID = "n1"


def noop_zip(out: Path) -> Path:
    """The no-op algorithm as a real offline package zip (the example's wheels, its code)."""
    example = [p.relative_to(EXAMPLE).as_posix() for p in EXAMPLE.rglob("*.py")]
    extra = [
        ("manifest.json", (NOOP / "manifest.json").read_bytes()),
        ("noop_algo.py", (NOOP / "noop_algo.py").read_bytes()),
    ]
    return make_package_zip(out, "1.0.0", omit=["manifest.json", *example], extra=extra)


def user_config(zip_path: Path) -> dict[str, Any]:
    """Bind the benchmark pid to the no-op package."""
    return {"zips": [str(zip_path)], "active": {PID: {"name": "noop", "version": "1.0.0"}}}


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    """p50 and p99 in ms, calls/s (one caller, back to back)."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p99 * 1000, len(ordered) / sum(ordered)


def timed(call: Callable[[], Any], count: int) -> list[float]:
    """Seconds per call, `count` calls."""
    out = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out


def http_call(port: int, frame: np.ndarray) -> Callable[[], Any]:
    """One `POST /inspect` with a raw part, on one keep-alive connection."""
    boundary = uuid.uuid4().hex
    fields = {"pid": PID, "step_index": "1", "width": str(SHAPE[1]), "height": str(SHAPE[0])}
    head = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="raw"; filename="f"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    body = head.encode() + frame.tobytes() + f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}

    def call() -> None:
        conn.request("POST", "/inspect", body=body, headers=headers)
        resp = conn.getresponse()
        answer = json.loads(resp.read())
        if resp.status != 200 or answer["result"]["execute"]["status"] != "OK":
            raise RuntimeError(f"HTTP {resp.status}: {answer}")

    return call


def throughput(handle: Any, frame: np.ndarray, clients: int, calls: int) -> float:
    """Calls/s through the handle with `clients` threads, `calls` calls in all."""
    left = [calls]
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            answer = handle.run_step.remote(PID, 1, frame).result(timeout_s=120)
            if answer["result"]["execute"]["status"] != "OK":
                raise RuntimeError(str(answer))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return calls / (time.perf_counter() - started)


def deploy(store: Path, zip_path: Path, replicas: int, http: dict[str, Any]) -> Any:
    """Apply the Serve config with `replicas` replicas; return the app's handle."""
    from ray import serve

    from procvision_runner.ray.rollout import apply_config, serve_config

    config = serve_config(str(store), user_config(zip_path), replicas=replicas, http=http)
    apply_config(config)
    return serve.get_app_handle("procvision")


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--calls", type=int, default=120)
    args = parser.parse_args()
    import ray
    from ray import serve

    frame = np.random.default_rng(1).integers(0, 256, SHAPE, dtype=np.uint8)
    with tempfile.TemporaryDirectory(prefix="pv-raybench-") as tmp:
        base = Path(tmp)
        zip_path = noop_zip(base / "noop-1.0.0.zip")
        alone = NodeRunner(base / "alone")
        cluster = LocalRayCluster(nodes=2)
        try:
            alone.apply(parse_user_config(user_config(zip_path)))
            cluster.start()
            cluster.connect("pv-bench")
            http = {"host": "127.0.0.1", "port": free_port()}
            serve.start(proxy_location="HeadOnly", http_options=http)
            handle = deploy(base / "stores", zip_path, 1, http)
            paths = {
                "alone": lambda: alone.run_step(PID, 1, frame),
                "handle": lambda: handle.run_step.remote(PID, 1, frame).result(timeout_s=120),
                "http": http_call(http["port"], frame),
            }
            samples: dict[str, list[float]] = {k: [] for k in paths}
            for call in paths.values():
                timed(call, 5)  # warm-up
            rounds = max(1, args.iterations // 10)
            for _ in range(rounds):
                for name, call in paths.items():
                    samples[name] += timed(call, 10)
            one = throughput(handle, frame, args.clients, args.calls)
            handle = deploy(base / "stores", zip_path, 2, http)
            throughput(handle, frame, args.clients, 10)  # warm-up of the new replica
            two = throughput(handle, frame, args.clients, args.calls)
            report(samples, one, two, args)
        finally:
            if ray.is_initialized():
                serve.shutdown()
            ray.shutdown()
            cluster.close()
            alone.close()


def report(samples: dict[str, list[float]], one: float, two: float, args: Any) -> None:
    """Print the table and the ratios."""
    load = os.getloadavg()
    print(f"1920x1200x3, no-op step; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"{'path':8} {'p50 ms':>9} {'p99 ms':>9} {'calls/s':>9} {'p50 / alone':>12}")
    base = percentiles(samples["alone"])[0]
    for name, values in samples.items():
        p50, p99, rate = percentiles(values)
        print(f"{name:8} {p50:9.2f} {p99:9.2f} {rate:9.1f} {p50 / base:11.2f}x")
    print(f"throughput through the handle, {args.clients} callers, {args.calls} calls:")
    print(f"  1 replica {one:.1f} calls/s, 2 replicas {two:.1f} calls/s: {two / one:.2f}x")


if __name__ == "__main__":
    main()
