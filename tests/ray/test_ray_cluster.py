"""The Runner as a Ray Serve deployment on a real local Ray cluster of two simulated nodes.

Two `ray start` nodes on 127.0.0.1 (tests/helpers/ray_cluster.py: every address and port pinned
to loopback), one replica per node, each with its own store and real workers. The first replica
installs the real zips inside Ray; the second node's store is then provisioned as a copy of the
first's (helpers/store_copy.py), so the second replica finds the same zip bytes installed and
only loads them, as a replica restarted on its node does. One cluster per module. `.ci/run`
installs the `ray` extra and sets PROCVISION_REQUIRE_RAY=1, so there the tests fail instead of
skipping when Ray is missing.
"""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from helpers.package_zips import make_package_zip
from helpers.ray_cluster import LocalRayCluster, free_port
from helpers.runner_kit import alive
from helpers.store_copy import copy_store
from PIL import Image

from procvision_algorithm_sdk.segment import SEGMENT_PREFIX, owner_pid_from_name

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

NAME = "algorithm-example"
APP = "procvision"
DEADLINE_S = 240.0


def _ray_or_skip() -> Any:
    try:
        import ray
        from ray import serve  # noqa: F401
    except ImportError:
        if os.environ.get("PROCVISION_REQUIRE_RAY") == "1":
            pytest.fail("ray[serve] is required here (pip install -e '.[dev,ray]')")
        pytest.skip("ray[serve] is not installed (pip install -e '.[dev,ray]'; .ci/run does)")
    return ray


def _config(zips: dict[str, Path], version: str) -> dict[str, Any]:
    binding = {"name": NAME, "version": version}
    return {"zips": [str(z) for z in zips.values()], "active": {"p001": binding, "p002": binding}}


@dataclass
class Deployed:
    cluster: LocalRayCluster
    handle: Any
    http_url: str
    store_root: Path
    zips: dict[str, Path]
    http: dict[str, Any]

    def deploy(self, version: str, replicas: int = 2) -> None:
        """Apply the Serve config with this version active (a user_config change: in place)."""
        from ray import serve

        from procvision_runner.ray.rollout import apply_config, serve_config

        user_config = _config(self.zips, version)
        config = serve_config(str(self.store_root), user_config, replicas=replicas, http=self.http)
        apply_config(config, timeout_s=DEADLINE_S)
        self.handle = serve.get_app_handle(APP)

    def states(self, want_nodes: int = 2) -> dict[str, dict[str, Any]]:
        """node id -> that node's replica state (asked until `want_nodes` answered)."""
        out: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + DEADLINE_S
        while len(out) < want_nodes:
            assert time.monotonic() < deadline, f"only {sorted(out)} answered"
            try:
                state = self.handle.state.remote().result(timeout_s=30)
            except Exception:  # a replica that is dying or starting: ask again
                time.sleep(0.2)
                continue
            out[state["node"]] = state
        return out


def _cluster_segments(pids: set[int]) -> list[str]:
    names = [n for n in os.listdir("/dev/shm") if n.startswith(SEGMENT_PREFIX)]
    return sorted(n for n in names if owner_pid_from_name(n) in pids)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    ray = _ray_or_skip()
    from ray import serve

    base = tmp_path_factory.mktemp("ray")
    zips = {v: make_package_zip(base / f"a-{v}.zip", v) for v in ("1.0.0", "1.0.1")}
    cluster = LocalRayCluster(nodes=2)
    pids: set[int] = set()
    try:
        cluster.start(nodes=1)  # the other node starts while the head's replica installs
        cluster.connect(f"pv-{uuid.uuid4().hex[:8]}")
        http = {"host": "127.0.0.1", "port": free_port()}
        serve.start(proxy_location="HeadOnly", http_options=http)
        url = f"http://127.0.0.1:{http['port']}"
        found = Deployed(cluster, None, url, base / "stores", zips, http)
        _deploy_from_one_install(found, ray)
        yield found
    finally:
        for index in range(len(cluster.procs)):
            pids.update(cluster.node_processes(index))
        try:
            if ray.is_initialized():
                serve.shutdown()
        finally:
            ray.shutdown()
            cluster.close()
    assert not cluster.leftovers(), cluster.leftovers()
    assert not _cluster_segments(pids | cluster._seen)
    assert not cluster.temp_dir.exists()


def _deploy_from_one_install(found: Deployed, ray: Any) -> None:
    """One replica installs the zips while the other node starts; that node gets a copy of the
    first replica's store, then a replica of its own."""
    from procvision_runner.ray.deployment import node_store_root

    errors: list[BaseException] = []

    def deploy_one() -> None:
        try:
            found.deploy("1.0.0", replicas=1)
        except BaseException as exc:
            errors.append(exc)

    installing = threading.Thread(target=deploy_one)
    installing.start()
    try:
        found.cluster.start()
        found.cluster.wait_nodes(found.cluster.node_count)
    finally:
        installing.join(timeout=DEADLINE_S + 60)
    assert not installing.is_alive() and not errors, errors
    (first,) = found.states(want_nodes=1)
    (other,) = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != first]
    source = node_store_root(found.store_root, first)
    copy = copy_store(source, node_store_root(found.store_root, other))
    found.deploy("1.0.0")
    # the second replica loaded the copied install: the same entries, none built again
    registries = [json.loads((s / "registry.json").read_text()) for s in (source, copy)]
    built = [sorted((e["version"], e["created_ns"]) for e in r["packages"]) for r in registries]
    assert len(built[0]) == 2 and built[0] == built[1], built
    assert set(found.states()) == {first, other}


@pytest.fixture
def frames(example_frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    board = np.ascontiguousarray(example_frame)
    return board, np.zeros_like(board)


def test_a_products_steps_see_one_session_across_replicas(
    deployed: Deployed, frames: tuple[np.ndarray, np.ndarray]
) -> None:
    from procvision_runner.ray.session import CarriedSession

    board, blank = frames
    product = CarriedSession(deployed.handle)
    first = product.run_step("p001", 1, board)
    assert first["execute"]["data"]["result_status"] == "OK", first
    # step 2 sees a blank frame: only the board location step 1 left in the session lets it
    # check; run it until both nodes have served it
    for _ in range(40):
        second = product.run_step("p001", 2, blank)
        data = second["execute"]["data"]
        assert data["result_status"] == "NG" and len(data["defect_rects"]) == 6, second
        if len(set(product.nodes)) == 2:
            break
    assert len(set(product.nodes)) == 2, product.nodes
    # a product without the carried state has no board on a blank frame
    alone = CarriedSession(deployed.handle).run_step("p001", 2, blank)
    assert alone["execute"]["data"]["ng_reason"] == "board not found", alone


def test_a_numpy_frame_reaches_the_replica_as_an_object_store_view(
    deployed: Deployed, frames: tuple[np.ndarray, np.ndarray]
) -> None:
    board, _blank = frames
    big = np.zeros((1200, 1920, 3), np.uint8)
    big[: board.shape[0], : board.shape[1]] = board
    answer = deployed.handle.run_step.remote("p001", 1, big).result(timeout_s=60)
    # not copied on receipt (a read-only view of Ray's object store): the Runner's copy into
    # the worker's slot is the frame's one copy
    assert answer["frame_view"] is True, answer
    assert answer["result"]["execute"]["status"] == "OK", answer


def _png(frame: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(frame).save(out, format="PNG")
    return out.getvalue()


def test_inspect_over_rays_http_proxy_carries_the_session(
    deployed: Deployed, frames: tuple[np.ndarray, np.ndarray]
) -> None:
    board, blank = frames
    session = f"http-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=deployed.http_url, timeout=120) as client:
        first = client.post(
            "/inspect",
            data={"pid": "p001", "step_index": "1", "session_id": session},
            files={"image": ("ok.png", _png(board), "image/png")},
        )
        assert first.status_code == 200, first.text
        body = first.json()
        assert body["result"]["execute"]["data"]["result_status"] == "OK", body
        height, width, _ = blank.shape
        fields = {
            "pid": "p001",
            "step_index": "2",
            "session_id": session,
            "session_state": json.dumps(body["session_state"]),
            "width": str(width),
            "height": str(height),
        }
        second = client.post(
            "/inspect", data=fields, files={"raw": ("f.raw", blank.tobytes(), "application/x")}
        )
        assert second.status_code == 200, second.text
        data = second.json()["result"]["execute"]["data"]
        assert data["result_status"] == "NG" and len(data["defect_rects"]) == 6, data
        bad = client.post("/inspect", data={"pid": "../x", "step_index": "1"})
        assert bad.status_code == 422 and bad.json()["error_code"] == "1001", bad.text
        short = client.post(
            "/inspect", data={**fields, "width": "7"}, files={"raw": ("f", b"xx", "a/b")}
        )
        assert short.status_code == 422 and short.json()["error_code"] == "1006", short.text
        assert client.get("/elsewhere").status_code == 404


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text: str = resp.read().decode()
        return text


def test_metrics_are_labelled_by_node(
    deployed: Deployed, frames: tuple[np.ndarray, np.ndarray]
) -> None:
    board, _blank = frames
    nodes = set(deployed.states())
    for _ in range(8):
        deployed.handle.run_step.remote("p002", 1, board).result(timeout_s=60)
    seen: set[str] = set()
    deadline = time.monotonic() + DEADLINE_S
    while seen != nodes:
        assert time.monotonic() < deadline, f"metrics name {seen}, nodes are {nodes}"
        text = "\n".join(_scrape(p) for p in deployed.cluster.metrics_ports)
        lines = [ln for ln in text.splitlines() if "procvision_ray_calls" in ln and "{" in ln]
        seen = {n for n in nodes for ln in lines if f'node="{n}"' in ln}
        if seen != nodes:
            time.sleep(1)


def test_a_rollout_through_user_config_under_load_fails_no_call(
    deployed: Deployed, frames: tuple[np.ndarray, np.ndarray]
) -> None:
    board, _blank = frames
    deployed.deploy("1.0.0")
    before = {n: s["replica_pid"] for n, s in deployed.states().items()}
    answers: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    handle = deployed.handle

    def load(pid: str) -> None:
        while not stop.is_set() and len(answers) < 5000:
            try:
                answers.append(handle.run_step.remote(pid, 1, board).result(timeout_s=60))
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=load, args=(p,)) for p in ("p001", "p002")]
    for t in threads:
        t.start()
    try:
        deployed.deploy("1.0.1")
        flipped = len(answers)
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline and len(answers) < flipped + 16:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=DEADLINE_S)
    assert not errors, errors[:3]
    bad = [a for a in answers if a["result"]["execute"]["status"] != "OK"]
    assert not bad, bad[:3]
    versions = [a["result"]["execute"]["package"]["version"] for a in answers]
    assert versions[0] == "1.0.0" and versions[-1] == "1.0.1", sorted(set(versions))
    after = deployed.states()
    # no replica restarted: the same processes serve the new version on both nodes
    assert {n: s["replica_pid"] for n, s in after.items()} == before
    for state in after.values():
        assert state["readiness"]["ready"], state
        loaded = {(p["name"], p["version"]) for p in state["stats"]["packages"]}
        assert loaded == {(NAME, "1.0.1")}, loaded
    deployed.deploy("1.0.0")


def test_killing_one_nodes_replica_leaves_the_other_serving(
    deployed: Deployed, frames: tuple[np.ndarray, np.ndarray]
) -> None:
    board, _blank = frames
    states = deployed.states()
    victim_node, survivor = sorted(states)
    victim = states[victim_node]
    dead_pid = victim["replica_pid"]
    workers = [w["pid"] for w in victim["stats"]["workers"] if w.get("pid")]
    assert workers and _cluster_segments({dead_pid}), victim
    os.kill(dead_pid, signal.SIGKILL)
    served: list[str] = []
    failed = 0
    deadline = time.monotonic() + DEADLINE_S
    while len([n for n in served if n == survivor]) < 6:
        assert time.monotonic() < deadline, (served, failed)
        try:
            answer = deployed.handle.run_step.remote("p001", 1, board).result(timeout_s=60)
        except Exception:  # routed to the dead replica before Serve noticed: the caller retries
            failed += 1
            continue
        assert answer["result"]["execute"]["status"] == "OK", answer
        served.append(answer["node"])
    # the killed replica's workers died with it (PR_SET_PDEATHSIG)
    _wait_for(lambda: not [p for p in workers if alive(p)], "workers of the killed replica")
    # Serve starts a new replica on that node; its Runner unlinks the dead one's segments
    replaced = _wait_for(
        lambda: _new_replica(deployed, victim_node, dead_pid), "a new replica on the node"
    )
    assert replaced["readiness"]["ready"], replaced
    assert not _cluster_segments({dead_pid})


def _new_replica(deployed: Deployed, node: str, dead_pid: int) -> dict[str, Any] | None:
    state = deployed.states().get(node)
    if state is None or state["replica_pid"] == dead_pid or not state["readiness"]["ready"]:
        return None
    return state


def _wait_for(check: Any, what: str) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
