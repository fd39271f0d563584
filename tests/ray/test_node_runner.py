"""Two nodes' Runners (NodeRunner, the logic each Ray replica holds), real zips, real workers.

The first NodeRunner installs the zips into its store with the station's checks; the second
node's store is provisioned as a copy of the first's (helpers/store_copy.py), so its apply
finds the same zip bytes installed and only loads them, the way a replica restarted on a node
does. One store per node; the session's state is carried by the caller from node to node.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.package_zips import make_package_zip
from helpers.store_copy import copy_store

from procvision_runner.ray.node import NodeRunner
from procvision_runner.ray.plan import parse_user_config

pytestmark = pytest.mark.slow

NAME = "algorithm-example"


def _config(zips: dict[str, Path], version: str) -> dict[str, Any]:
    binding = {"name": NAME, "version": version}
    return {"zips": [str(z) for z in zips.values()], "active": {"p001": binding, "p002": binding}}


@pytest.fixture(scope="module")
def zips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("zips")
    return {v: make_package_zip(base / f"a-{v}.zip", v) for v in ("1.0.0", "1.0.1")}


@pytest.fixture(scope="module")
def nodes(
    tmp_path_factory: pytest.TempPathFactory, zips: dict[str, Path]
) -> Iterator[list[NodeRunner]]:
    base = tmp_path_factory.mktemp("nodes")
    plan = parse_user_config(_config(zips, "1.0.0"))
    made = [NodeRunner(base / "node-0")]
    try:
        first = made[0].apply(plan)
        assert sorted(first["installed"]) == [f"{NAME} 1.0.0", f"{NAME} 1.0.1"], first
        made.append(NodeRunner(copy_store(base / "node-0", base / "node-1")))
        second = made[1].apply(plan)
        assert second["installed"] == [] and second["active"] == first["active"], second
        assert made[1].readiness()["ready"], made[1].readiness()
        yield made
    finally:
        for node in made:
            node.close()


def test_a_product_steps_on_two_nodes_see_one_session(
    nodes: list[NodeRunner], zips: dict[str, Path], example_frame: np.ndarray
) -> None:
    for node in nodes:
        node.apply(parse_user_config(_config(zips, "1.0.0")))
    board = np.ascontiguousarray(example_frame)
    blank = np.zeros_like(board)
    first = nodes[0].run_step("p001", 1, board, session_id="product-a")
    assert first["result"]["execute"]["data"]["result_status"] == "OK", first
    assert "board" in first["session_state"]
    # step 2 on the other node, blank frame: only the carried board location lets it check
    second = nodes[1].run_step(
        "p001", 2, blank, session_id="product-a", session_state=first["session_state"]
    )
    data = second["result"]["execute"]["data"]
    assert data["result_status"] == "NG", second
    assert data.get("ng_reason") != "board not found", second
    assert len(data["defect_rects"]) == 6, second
    # without the carried state the second node has no board: it must locate and fail
    alone = nodes[1].run_step("p001", 2, blank, session_id="product-b")
    assert alone["result"]["execute"]["data"]["ng_reason"] == "board not found", alone


def test_a_rollout_under_load_fails_no_call_and_restarts_nothing(
    nodes: list[NodeRunner], zips: dict[str, Path], example_frame: np.ndarray
) -> None:
    node = nodes[0]
    node.apply(parse_user_config(_config(zips, "1.0.0")))
    frame = np.ascontiguousarray(example_frame)
    answers: list[dict[str, Any]] = []
    stop = threading.Event()

    def load(pid: str) -> None:
        while not stop.is_set() and len(answers) < 2000:
            answers.append(node.run_step(pid, 1, frame))

    threads = [threading.Thread(target=load, args=(p,)) for p in ("p001", "p002")]
    for t in threads:
        t.start()
    try:
        node.apply(parse_user_config(_config(zips, "1.0.1")))
        flipped = len(answers)
        deadline = threading.Event()
        for _ in range(400):
            if len(answers) >= flipped + 8 or deadline.wait(0.05):
                break
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    bad = [a for a in answers if a["result"]["execute"]["status"] != "OK"]
    assert not bad, bad[:3]
    versions = [a["result"]["execute"]["package"]["version"] for a in answers]
    assert versions[0] == "1.0.0" and versions[-1] == "1.0.1", sorted(set(versions))
    assert node.readiness()["ready"], node.readiness()
    loaded = {(p["name"], p["version"]) for p in node.runner.packages()}
    assert loaded == {(NAME, "1.0.1")}, loaded
    node.apply(parse_user_config(_config(zips, "1.0.0")))
