"""The per-call costs the lease path shed, each measured side by side in one run.

    .venv/bin/python benchmarks/http_overheads.py [--calls 2000] [--rounds 5]

Against one uvicorn server (httptools + uvloop where installed) in a subprocess, whose routes
answer a small JSON body the way `/inspect` does, one client alternates call by call between
the two sides of each comparison (so the machine's noise falls on both alike):
  client    the same POST through `http.client` and through the client's `WireConnection`
  hop       a route that runs a blocking function (1 ms asleep, as a Runner call waits)
            through Starlette's `run_in_threadpool` (anyio's `to_thread`) and through asyncio's
            `run_in_executor` on a thread pool (the service keeps anyio's: no difference)
  lane      the same lease-shaped form, validated by one pydantic model, answered by a FastAPI
            route (`request.form()`, the request through FastAPI's middleware stack and
            routing) and by a plain ASGI layer in front of that stack (what
            `service/lease_lane.py` does)
Reported per comparison: the median over rounds of each side's p50 (ms), and the median of the
per-round differences and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from fastapi import Request  # noqa: E402  (the route's annotation, resolved by FastAPI)

from procvision_runner.client_wire import WireConnection  # noqa: E402

ANSWER = {"status": "OK", "data": {"result_status": "OK", "defect_rects": []}, "pad": "x" * 1200}
FORM = b"pid=n1&step_index=1&frame=fl_abcdefghijkl&frame_seq=1"
FORM_TYPE = "application/x-www-form-urlencoded"
WAIT_S = 0.001


def build_app() -> Any:
    """The server's app: the FastAPI routes, with a plain ASGI layer in front for /lane."""
    import urllib.parse
    from concurrent.futures import ThreadPoolExecutor

    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, Field
    from starlette.concurrency import run_in_threadpool

    class LeaseForm(BaseModel):
        pid: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
        step_index: int = Field(ge=0)
        frame: str = Field(pattern=r"^fl_[A-Za-z0-9_-]{8,64}$")
        frame_seq: int | None = None

    app = FastAPI()
    pool = ThreadPoolExecutor(max_workers=40)

    async def in_pool(fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, fn)

    def work() -> dict[str, Any]:
        time.sleep(WAIT_S)  # the Runner call waits on its worker's answer, GIL released
        return ANSWER

    @app.post("/hop/anyio")
    async def hop_anyio() -> JSONResponse:
        return JSONResponse(await run_in_threadpool(work))

    @app.post("/hop/executor")
    async def hop_executor() -> JSONResponse:
        return JSONResponse(await in_pool(work))

    @app.post("/route")
    async def route(request: Request) -> JSONResponse:
        LeaseForm.model_validate(dict(await request.form()))
        return JSONResponse(await run_in_threadpool(work))

    async def lane(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/lane":
            await app(scope, receive, send)
            return
        message = await receive()
        LeaseForm.model_validate(dict(urllib.parse.parse_qsl(message["body"].decode("ascii"))))
        await JSONResponse(await run_in_threadpool(work))(scope, receive, send)

    return lane


def serve() -> None:
    """The server process: print the port, serve until terminated."""
    import uvicorn

    app = build_app()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections wait in the backlog until uvicorn accepts
    print(sock.getsockname()[1], flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


def comparisons(port: int) -> dict[str, dict[str, Callable[[], None]]]:
    """Each comparison's two sides, as calls that check their answer."""
    plain = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    wire = WireConnection("127.0.0.1", port, 60.0, f"127.0.0.1:{port}")
    headers = {"Content-Type": FORM_TYPE}

    def via_http_client(path: str) -> Callable[[], None]:
        def call() -> None:
            plain.request("POST", path, body=FORM, headers=headers)
            response = plain.getresponse()
            body = response.read()
            if response.status != 200 or json.loads(body)["status"] != "OK":
                raise RuntimeError(f"{path}: {response.status} {body[:200]!r}")

        return call

    def via_wire(path: str) -> Callable[[], None]:
        def call() -> None:
            status, body = wire.exchange("POST", path, headers, FORM)
            if status != 200 or json.loads(body)["status"] != "OK":
                raise RuntimeError(f"{path}: {status} {body[:200]!r}")

        return call

    return {
        "client": {"http.client": via_http_client("/lane"), "WireConnection": via_wire("/lane")},
        "hop": {
            "anyio to_thread": via_wire("/hop/anyio"),
            "run_in_executor": via_wire("/hop/executor"),
        },
        "lane": {"FastAPI route": via_wire("/route"), "ASGI lane": via_wire("/lane")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000, help="calls per side per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        report(comparisons(port), args)
    finally:
        server.terminate()
        server.wait(60)


def report(pairs: dict[str, dict[str, Callable[[], None]]], args: argparse.Namespace) -> None:
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; ms per call, p50"
    )
    for name, sides in pairs.items():
        (a, call_a), (b, call_b) = sides.items()
        for _ in range(50):
            call_a()
            call_b()
        p50s: dict[str, list[float]] = {a: [], b: []}
        for _ in range(args.rounds):
            samples: dict[str, list[float]] = {a: [], b: []}
            for i in range(args.calls):
                for side, call in (
                    ((a, call_a), (b, call_b)) if i % 2 else ((b, call_b), (a, call_a))
                ):
                    t = time.perf_counter()
                    call()
                    samples[side].append((time.perf_counter() - t) * 1000)
            for side in (a, b):
                p50s[side].append(statistics.median(samples[side]))
        diffs = [x - y for x, y in zip(p50s[a], p50s[b], strict=True)]
        ratios = [x / y for x, y in zip(p50s[a], p50s[b], strict=True)]
        print(
            f"  {name:7}{a:>16} {statistics.median(p50s[a]):6.3f}  {b:>15} "
            f"{statistics.median(p50s[b]):6.3f}  saved {statistics.median(diffs):6.3f} ms "
            f"(rounds {min(diffs):.3f}..{max(diffs):.3f}), {statistics.median(ratios):.2f}x"
        )
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
