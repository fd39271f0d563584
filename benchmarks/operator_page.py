"""Operator page benchmark: what the live page and the result archive add to a call.

    .venv/bin/python benchmarks/operator_page.py [--calls 300] [--size 1920x1200]

One Runner with the no-op package; the HTTP app served in this process on 127.0.0.1. Measured
side by side in one run, interleaved round by round so drift hits every row alike:
(a) `run_step` in process, without and with the page's call observer registered (the one thing
    the page adds inside the Runner);
(b) `POST /inspect` with a raw frame: the page off (`operator_page = false`), the page on with
    nobody watching, the page on with a connected browser-like client (event stream open and
    `/page/state` polled, so every result gets a thumbnail), and the page on with every OK frame
    also archived (`archive_ok_sample_every = 1`: a PNG written per call, off the call's path).
Prints p50/p99 per row and each row's p50 difference to its baseline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from helpers.station_server import ALGOS, StationServer  # noqa: E402

from procvision_runner import Runner, RunnerConfig  # noqa: E402
from procvision_runner.service.live import LiveFeed  # noqa: E402

GOAL_MS = 0.1


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _watch(url: str, stop: threading.Event) -> None:
    """A page: the event stream open, the state polled every 2 s."""
    with httpx.Client(base_url=url, timeout=60.0) as c:
        while not stop.is_set():
            with c.stream("GET", "/page/events") as events:
                last = 0.0
                for _line in events.iter_lines():
                    if stop.is_set():
                        return
                    if time.monotonic() - last > 2.0:
                        c.get("/page/state")
                        last = time.monotonic()


def run_step_rows(frame: np.ndarray, calls: int) -> dict[str, list[float]]:
    rows: dict[str, list[float]] = {
        "run_step, no page observer": [],
        "run_step + page observer": [],
    }
    with (
        Runner(RunnerConfig(heartbeat_interval_ms=5000)) as bare,
        Runner(RunnerConfig(heartbeat_interval_ms=5000)) as watched,
    ):
        bare.load(ALGOS / "noop")
        watched.load(ALGOS / "noop")
        feed = LiveFeed(None)
        watched.add_call_observer(feed.observe)
        for _ in range(20):
            bare.run_step("n1", 1, frame)
            watched.run_step("n1", 1, frame)
        for _ in range(calls):
            for name, runner in (
                ("run_step, no page observer", bare),
                ("run_step + page observer", watched),
            ):
                t = time.perf_counter()
                runner.run_step("n1", 1, frame)
                rows[name].append((time.perf_counter() - t) * 1000)
        feed.close()
    return rows


def http_rows(frame: np.ndarray, calls: int) -> dict[str, list[float]]:
    h, w, _ = frame.shape
    body = frame.tobytes()
    setups: dict[str, dict[str, Any]] = {
        "/inspect, page off": {"operator_page": False},
        "/inspect, page on, nobody watching": {},
        "/inspect, page on, page connected": {},
        "/inspect, page on, every frame archived": {"archive_ok_sample_every": 1},
    }
    rows: dict[str, list[float]] = {name: [] for name in setups}
    servers: dict[str, StationServer] = {}
    clients: dict[str, httpx.Client] = {}
    stop = threading.Event()
    watchers: list[threading.Thread] = []
    tmp = tempfile.TemporaryDirectory(prefix="pv-page-bench-")
    try:
        for i, (name, service) in enumerate(setups.items()):
            service = dict(service, max_inspect_bytes=64 * 1024**2)
            srv = StationServer(Path(tmp.name) / str(i), [ALGOS / "noop"], service=service)
            servers[name] = srv.start()
            clients[name] = httpx.Client(base_url=srv.url, timeout=60.0)
        watched_url = servers["/inspect, page on, page connected"].url
        watcher = threading.Thread(target=_watch, args=(watched_url, stop), daemon=True)
        watcher.start()
        watchers.append(watcher)
        fields = {"pid": "n1", "step_index": "1", "width": str(w), "height": str(h)}
        files = {"raw": ("frame.raw", body, "application/octet-stream")}
        for _ in range(10):
            for c in clients.values():
                c.post("/inspect", data=fields, files=files).raise_for_status()
        for _ in range(calls):
            for name, c in clients.items():
                t = time.perf_counter()
                r = c.post("/inspect", data=fields, files=files)
                rows[name].append((time.perf_counter() - t) * 1000)
                r.raise_for_status()
    finally:
        stop.set()
        for c in clients.values():
            c.close()
        for srv in servers.values():
            srv.stop()
        for watcher in watchers:
            watcher.join(5)
        tmp.cleanup()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--size", default="1920x1200")
    args = parser.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    frame = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    print(f"operator page benchmark: {w}x{h}x3 frame, {args.calls} calls per row, interleaved")
    results = run_step_rows(frame, args.calls)
    results.update(http_rows(frame, args.calls))
    print(f"{'row':44s} {'p50 ms':>8s} {'p99 ms':>8s} {'p50 - base':>11s}")
    bases = {"run_step": "run_step, no page observer", "/inspect": "/inspect, page off"}
    for name, values in results.items():
        base = results[bases[name.split(",")[0].split(" +")[0]]]
        diff = statistics.median(values) - statistics.median(base)
        print(f"{name:44s} {_p(values, 0.5):8.3f} {_p(values, 0.99):8.3f} {diff:+11.3f}")
    observer = statistics.median(results["run_step + page observer"]) - statistics.median(
        results["run_step, no page observer"]
    )
    verdict = "MET" if observer <= GOAL_MS else "NOT MET"
    print(f"goal: the page adds <= {GOAL_MS} ms p50 to run_step: {observer:+.3f} ms, {verdict}")


if __name__ == "__main__":
    main()
