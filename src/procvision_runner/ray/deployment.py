"""The Ray Serve deployment: one NodeRunner per node, rolled out through user_config.

A replica owns its node's slots and workers (max_replicas_per_node=1). `reconfigure` applies a
new user_config in place through the store's switch, so a rollout restarts no replica and fails
no call. Sessions travel with the request (see session.py): every answer hands back the
session's state, and the next step carries it to whichever replica serves it.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray import serve
from ray.serve import metrics
from starlette.requests import Request
from starlette.responses import Response

from ..config import RunnerConfig
from ..errors import RunnerError
from ..service.routes_inspect import error_result
from .http import inspect_request
from .node import NodeRunner
from .plan import config_digest, parse_user_config

__all__ = ["RunnerDeployment", "app_builder", "build_app", "node_store_root", "request_timeout_s"]

_RAY_MARGIN_S = 5.0


def request_timeout_s(config: RunnerConfig) -> float:
    """Ray's request timeout for a step: above the Runner's own deadlines (queue + pre + exec)."""
    runner_ms = config.queue_timeout_ms + config.pre_execute_timeout_ms + config.execute_timeout_ms
    return runner_ms / 1000 + _RAY_MARGIN_S


def node_store_root(store_root: str | Path, node_id: str) -> Path:
    """The store of the replica on node `node_id`: one store per node under `store_root`."""
    # simulated nodes of one machine share the root, so the node id keeps their stores apart
    return Path(store_root) / f"node-{node_id[:16]}"


@serve.deployment(
    max_replicas_per_node=1,
    # a rollout installs and warms inside reconfigure: give it the store's time, not Ray's default
    health_check_period_s=5,
    health_check_timeout_s=30,
    graceful_shutdown_timeout_s=30,
    ray_actor_options={"num_cpus": 0},
)
class RunnerDeployment:
    """A node's Runner behind a Ray Serve replica; steps, health and metrics by node."""

    def __init__(self, store_root: str, runner_config: dict[str, Any] | None = None) -> None:
        self.node_id = ray.get_runtime_context().get_node_id()
        # one store per node: a node's workers run from its own disk
        root = node_store_root(store_root, self.node_id)
        self.node = NodeRunner(root, RunnerConfig.from_dict(dict(runner_config or {})))
        self.applied = ""  # config_digest of the user_config applied last
        tags: Any = ("node", "pid", "status")  # Ray's stubs say tuple[str]; it takes any
        self._calls = metrics.Counter(
            "procvision_ray_calls", "steps answered, by node, pid and status", tag_keys=tags
        )
        self._latency = metrics.Histogram(
            "procvision_ray_step_ms",
            "step latency inside the replica (ms)",
            boundaries=[5, 10, 25, 50, 100, 250, 500, 1000, 5000],
            tag_keys=tags[:2],
        )

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply zips + pid map: install, warm new versions, flip, drain old; no restart."""
        plan = parse_user_config(user_config)
        await asyncio.to_thread(self.node.apply, plan)
        self.applied = config_digest(user_config)

    async def run_step(self, pid: str, step_index: int, frame: Any, **kwargs: Any) -> dict:
        """One step (pre_execute + execute); the frame is copied once, into a worker's slot."""
        # A frame from a handle arrives as a read-only view of Ray's object store (Ray copies
        # nothing on receipt); the Runner's copy into the slot is then the only one.
        frame_view = isinstance(frame, np.ndarray) and not frame.flags.owndata
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            answer = await asyncio.to_thread(self.node.run_step, pid, step_index, frame, **kwargs)
        except RunnerError as exc:  # a carried session state that cannot be adopted
            failed = error_result(exc.error_code, exc.message, None)
            answer = {"result": {"pre_execute": failed, "execute": None}, "session_state": None}
        elapsed_ms = (loop.time() - started) * 1000
        execute = answer["result"].get("execute") or answer["result"].get("pre_execute") or {}
        status = str(execute.get("status", "ERROR"))
        self._calls.inc(tags={"node": self.node_id, "pid": pid, "status": status})
        self._latency.observe(elapsed_ms, tags={"node": self.node_id, "pid": pid})
        answer["node"] = self.node_id
        answer["replica_pid"] = os.getpid()
        answer["frame_view"] = frame_view
        return answer

    async def __call__(self, request: Request) -> Response:
        """HTTP through Ray's proxy: POST /inspect with the station's parts (see http.py)."""
        return await inspect_request(request, self.run_step)

    async def state(self) -> dict[str, Any]:
        """This replica's node, process, readiness, Runner stats and worker pids."""
        stats = await asyncio.to_thread(self.node.runner.stats)
        return {
            "node": self.node_id,
            "replica_pid": os.getpid(),
            "readiness": await asyncio.to_thread(self.node.readiness),
            "applied": self.applied,
            "stats": stats,
        }

    def check_health(self) -> None:
        """Serve's health check: the Runner's readiness, not a ping."""
        details = self.node.readiness()
        if not details["ready"]:
            raise RuntimeError("; ".join(details["problems"]))

    def __del__(self) -> None:
        node = getattr(self, "node", None)
        if node is not None:
            node.close()


def build_app(
    store_root: str,
    user_config: dict[str, Any],
    *,
    replicas: int = 1,
    runner_config: dict[str, Any] | None = None,
) -> serve.Application:
    """The application to `serve.run`: `replicas` nodes, each with its own Runner."""
    deployment: Any = RunnerDeployment  # a serve Deployment at run time, a class to mypy
    return deployment.options(num_replicas=replicas, user_config=user_config).bind(
        store_root, runner_config
    )


def app_builder(args: dict[str, Any]) -> serve.Application:
    """The application a Serve config names (`import_path`); user_config comes from the config."""
    unknown = sorted(set(args) - {"store_root", "runner_config"})
    if unknown or not isinstance(args.get("store_root"), str):
        raise RunnerError(f"app args need store_root (str), runner_config; got {sorted(args)}")
    deployment: Any = RunnerDeployment
    return deployment.bind(args["store_root"], args.get("runner_config"))
