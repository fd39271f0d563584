"""/inspect decodes under a global pixel budget on one dedicated thread (real HTTP, real workers).

A gated algorithm holds its request (and so its decoded frame's pixels) until the test opens the
gate, which makes "the budget is taken" a state the test controls instead of a timing guess.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from helpers.inprocess_server import InProcessServer
from PIL import Image

from procvision_runner.config import RunnerConfig
from procvision_runner.runner import Runner
from procvision_runner.service import ServiceConfig, create_app
from procvision_runner.service.decoding import PixelBudget
from procvision_runner.store import PackageManager, PackageStore

GATE_PKG = Path(__file__).resolve().parents[1] / "algos" / "runner" / "gate"
WIDTH, HEIGHT = 40, 25  # 1000 pixels: the whole budget of these tests


@pytest.fixture(scope="module")
def runner() -> Iterator[Runner]:
    with Runner(RunnerConfig(warmup_calls=0, workers_per_package=2)) as r:
        r.load(GATE_PKG)
        yield r


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (WIDTH, HEIGHT), (9, 8, 7)).save(out, format="PNG")
    return out.getvalue()


def _inspect(url: str, gate: Path) -> httpx.Response:
    return httpx.post(
        f"{url}/inspect",
        data={"pid": "g1", "step_index": "1", "user_params": json.dumps({"gate": str(gate)})},
        files={"image": ("frame.png", _png(), "image/png")},
        timeout=120.0,
    )


def _until(what: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not what():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(0.01)


class _Call(threading.Thread):
    def __init__(self, url: str, gate: Path) -> None:
        super().__init__(daemon=True)
        self.url, self.gate = url, gate
        self.response: httpx.Response | None = None

    def run(self) -> None:
        self.response = _inspect(self.url, self.gate)

    def result(self) -> httpx.Response:
        self.join(120)
        assert self.response is not None
        return self.response


def _serve(runner: Runner, tmp_path: Path, wait_ms: int) -> tuple[Any, InProcessServer]:
    manager = PackageManager(PackageStore(tmp_path / f"store-{wait_ms}").open(), runner)
    cfg = ServiceConfig(decode_budget_pixels=WIDTH * HEIGHT, decode_wait_ms=wait_ms)
    app = create_app(manager, runner, cfg, start_packages=False)
    return app, InProcessServer(app)


def _decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("procvision-decode")]


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["execute"]["data"]["result_status"] == "OK", body
    return body


@pytest.mark.slow
def test_over_the_budget_answers_503_with_retry_after(runner: Runner, tmp_path: Path) -> None:
    app, server = _serve(runner, tmp_path, wait_ms=300)
    budget = app.state.decoder.budget
    gate = tmp_path / "gate"
    with server:
        holder = _Call(server.url, gate)
        holder.start()
        _until(lambda: budget.in_use == WIDTH * HEIGHT)  # decoded, held while the step runs
        refused = _inspect(server.url, tmp_path / "never")
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error_code"] == "1005" and "busy" in refused.json()["message"]
        gate.touch()
        _ok(holder.result())
        assert budget.in_use == 0 and budget.waiting == 0
        assert len(_decode_threads()) == 1  # every decode ran on the one dedicated thread
    assert _decode_threads() == []  # and it ends with the app


def test_a_waiting_request_succeeds_when_the_budget_frees(runner: Runner, tmp_path: Path) -> None:
    app, server = _serve(runner, tmp_path, wait_ms=60_000)
    budget = app.state.decoder.budget
    gate = tmp_path / "gate"
    with server:
        holder = _Call(server.url, gate)
        holder.start()
        _until(lambda: budget.in_use == WIDTH * HEIGHT)
        waiter = _Call(server.url, gate)
        waiter.start()
        _until(lambda: budget.waiting == 1)  # over the budget: it waits, no answer yet
        assert waiter.response is None
        gate.touch()
        _ok(holder.result())
        _ok(waiter.result())
        assert budget.in_use == 0 and budget.waiting == 0


def test_waiters_are_served_in_arrival_order() -> None:
    async def scenario() -> list[str]:
        budget = PixelBudget(10)
        order: list[str] = []
        assert await budget.acquire(6, 1.0)

        async def take(name: str, pixels: int) -> None:
            assert await budget.acquire(pixels, 30.0)
            order.append(name)

        big = asyncio.create_task(take("big", 10))  # must wait for all 10
        await asyncio.sleep(0)
        small = asyncio.create_task(take("small", 2))  # fits now, but arrived later
        await asyncio.sleep(0.05)
        assert order == [] and budget.waiting == 2
        budget.release(6)
        await big
        assert order == ["big"] and budget.waiting == 1
        budget.release(10)
        await small
        # a waiter whose time runs out leaves the queue and lets the next one through
        assert not await budget.acquire(9, 0.05)
        budget.release(2)
        return order

    assert asyncio.run(scenario()) == ["big", "small"]


def test_a_16bit_grey_png_reaches_the_algorithm_scaled(runner: Runner, tmp_path: Path) -> None:
    _, server = _serve(runner, tmp_path, wait_ms=10_000)
    out = io.BytesIO()
    Image.fromarray(np.full((HEIGHT, WIDTH), 0xABCD, np.uint16)).save(out, format="PNG")
    gate = tmp_path / "open"
    gate.touch()
    with server:
        response = httpx.post(
            f"{server.url}/inspect",
            data={"pid": "g1", "step_index": "1", "user_params": json.dumps({"gate": str(gate)})},
            files={"image": ("grey16.png", out.getvalue(), "image/png")},
            timeout=120.0,
        )
    assert _ok(response)["execute"]["data"]["pixel"] == 0xAB  # was 255: clipped
