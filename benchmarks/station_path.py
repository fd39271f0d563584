"""Station path benchmark: client to verdict through the HTTP service, side by side in one run.

    .venv/bin/python benchmarks/station_path.py [--iterations 100] [--big-iterations 20]
                                                [--clients 4]

At 1920x1200x3 and 5472x3648x3, one no-op step (pre_execute + execute) per call:
  floor      in-process `Runner.run_step` (the frame copied into the worker's slot, no HTTP)
  lease      `RunnerClient` on this host: frame written into a leased segment, `POST /inspect`
             names the lease (the worker reads that segment; no copy after the client's write)
  raw        `POST /inspect/raw`: the pixels as the request body, streamed into a segment
  multipart  `POST /inspect` with a `raw` part (what station software used before)
  png, jpeg  `POST /inspect` with an `image` part (encoded once up front; decode is the server's)
p50/p99 in ms and calls/s with one client, then calls/s with --clients clients (threads, each
with its own connection). The server is `create_app` on uvicorn (httptools + uvloop where
installed) in a subprocess, over a Runner with the no-op package loaded.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
NOOP = ROOT / "tests" / "algos" / "runner" / "noop"
sys.path.insert(0, str(ROOT / "src"))

from procvision_runner import Runner, RunnerConfig  # noqa: E402
from procvision_runner.client import RunnerClient  # noqa: E402

SIZES = {"1920x1200x3": (1200, 1920, 3), "5472x3648x3": (3648, 5472, 3)}
WORKERS = 2


def runner_config() -> RunnerConfig:
    return RunnerConfig(heartbeat_interval_ms=5000, workers_per_package=WORKERS)


def serve(port_file: str) -> None:
    """The server process: a Runner with the no-op package, the app on an ephemeral port."""
    import socket

    import uvicorn

    from procvision_runner.service import ServiceConfig, create_app
    from procvision_runner.store import PackageManager, PackageStore

    with (
        tempfile.TemporaryDirectory(prefix="station-bench-") as tmp,
        Runner(runner_config()) as runner,
    ):
        runner.load(NOOP)
        store = PackageStore(Path(tmp) / "store").open()
        config = ServiceConfig(max_inspect_bytes=512 * 1024**2)
        app = create_app(PackageManager(store, runner), runner, config, start_packages=False)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        Path(port_file).write_text(str(sock.getsockname()[1]))
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(call: Callable[[], None], n: int) -> list[float]:
    call()  # warm: leases, connections, caches
    out = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        out.append((time.perf_counter() - t) * 1000)
    return out


def throughput(make_call: Callable[[], Callable[[], None]], clients: int, n: int) -> float:
    """Calls/s of `clients` threads, each with its own call (connection) doing `n` calls."""
    calls = [make_call() for _ in range(clients)]
    for c in calls:
        c()
    barrier = threading.Barrier(clients + 1)

    def run(c: Callable[[], None]) -> None:
        barrier.wait()
        for _ in range(n):
            c()

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return clients * n / (time.perf_counter() - t0)


def multipart(fields: dict[str, str], part: str, data: bytes, mime: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    chunks = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{part}"; filename="f"\r\n'
        f"Content-Type: {mime}\r\n\r\n"
    ).encode()
    body = b"".join(chunks) + head + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def form_call(port: int, body: bytes, ctype: str) -> Callable[[], None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def call() -> None:
        nonlocal conn
        try:
            conn.request("POST", "/inspect", body=body, headers={"Content-Type": ctype})
            r = conn.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            # uvicorn closes a keep-alive connection idle for 5 s: reconnect once
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            conn.request("POST", "/inspect", body=body, headers={"Content-Type": ctype})
            r = conn.getresponse()
        data = r.read()
        if r.status != 200 or b'"result_status":"OK"' not in data.replace(b" ", b""):
            raise RuntimeError(f"{r.status}: {data[:300]!r}")

    return call


CLIENTS: list[RunnerClient] = []


def client_call(url: str, transport: str, frame: np.ndarray) -> Callable[[], None]:
    client = RunnerClient(url, transport=transport)
    CLIENTS.append(client)

    def call() -> None:
        out = client.inspect("n1", 1, frame)
        ex = out["execute"]
        if ex is None or ex["data"].get("result_status") != "OK":
            raise RuntimeError(str(out)[:300])

    return call


def encoded(frame: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def bench_size(
    url: str, port: int, runner: Runner, shape: tuple[int, int, int], n: int, clients: int
) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 255, shape, dtype=np.uint8)
    fields = {"pid": "n1", "step_index": "1"}
    geometry = {"width": str(shape[1]), "height": str(shape[0]), "channels": "3"}
    raw_mp = multipart({**fields, **geometry}, "raw", frame.tobytes(), "application/octet-stream")
    png = multipart(fields, "image", encoded(frame, "PNG"), "image/png")
    jpeg = multipart(fields, "image", encoded(frame, "JPEG"), "image/jpeg")

    def floor() -> Callable[[], None]:
        def call() -> None:
            out = runner.run_step("n1", 1, frame)
            assert out["execute"] is not None and out["execute"]["status"] == "OK", out

        return call

    makers: dict[str, Callable[[], Callable[[], None]]] = {
        "floor run_step": floor,
        "lease": lambda: client_call(url, "lease", frame),
        "raw upload": lambda: client_call(url, "raw", frame),
        "multipart raw": lambda: form_call(port, *raw_mp),
        "multipart png": lambda: form_call(port, *png),
        "multipart jpeg": lambda: form_call(port, *jpeg),
    }
    rows: dict[str, dict[str, float]] = {}
    for name, make in makers.items():
        samples = timed(make(), n)
        rows[name] = {
            "p50": statistics.median(samples),
            "p99": pct(samples, 0.99),
            "per_s": 1000.0 / statistics.mean(samples),
            "per_s_n": throughput(make, clients, max(3, n // clients)),
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--big-iterations", type=int, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated subset")
    parser.add_argument("--serve", metavar="PORT_FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    with tempfile.TemporaryDirectory(prefix="station-bench-") as tmp:
        port_file = Path(tmp) / "port"
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)])
        try:
            deadline = time.monotonic() + 120
            while not port_file.exists() or not port_file.read_text():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the benchmark server did not start")
                time.sleep(0.05)
            port = int(port_file.read_text())
            url = f"http://127.0.0.1:{port}"
            time.sleep(0.5)  # uvicorn binds the given socket; give it a moment to accept
            report(url, port, args)
        finally:
            for client in CLIENTS:
                client.close()
            server.terminate()
            server.wait(60)


def report(url: str, port: int, args: argparse.Namespace) -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; ms per step, one client")
    with Runner(runner_config()) as runner:
        runner.load(NOOP)
        for label, shape in SIZES.items():
            if label not in args.sizes.split(","):
                continue
            n = args.iterations if shape[0] < 2000 else args.big_iterations
            rows = bench_size(url, port, runner, shape, n, args.clients)
            print(f"\n{label}  ({n} calls each; {args.clients} clients for the last column)")
            print(f"  {'':16}{'p50':>9}{'p99':>9}{'calls/s':>9}{f'x{args.clients} c/s':>10}")
            for name, row in rows.items():
                print(
                    f"  {name:16}{row['p50']:9.2f}{row['p99']:9.2f}{row['per_s']:9.1f}"
                    f"{row['per_s_n']:10.1f}"
                )
            floor, lease = rows["floor run_step"]["p50"], rows["lease"]["p50"]
            budget = 1.5 * floor + 0.3
            print(
                f"  lease p50 {lease:.2f} ms vs goal <= 1.5 x floor + 0.3 = {budget:.2f} ms: "
                f"{'met' if lease <= budget else 'NOT met'}"
            )
            mp = rows["multipart raw"]["p50"]
            print(f"  multipart raw / raw upload p50: {mp / rows['raw upload']['p50']:.1f}x")
            print(f"  multipart raw / lease p50:      {mp / lease:.1f}x")


if __name__ == "__main__":
    main()
