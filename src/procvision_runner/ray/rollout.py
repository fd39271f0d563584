"""Deploying the application from a Serve config (what `serve deploy file.yaml` applies).

Why a config and not `serve.run` for a release: `serve.run` gives every call a new random code
version, so even a change of `user_config` alone replaces every replica (found on a two-node
cluster: a rollout through `serve.run` restarted both replicas). A config deploy keeps the code
version (import path + args) and applies a changed `user_config` in place: Serve calls
`reconfigure` on the live replicas, which switch versions without failing a call.
"""

from __future__ import annotations

import time
from typing import Any

from ray import serve
from ray.serve.schema import ServeDeploySchema

from ..errors import RunnerError
from .plan import config_digest, parse_user_config

__all__ = ["APP_IMPORT_PATH", "DEPLOYMENT_NAME", "apply_config", "serve_config"]

APP_IMPORT_PATH = "procvision_runner.ray.deployment:app_builder"
DEPLOYMENT_NAME = "RunnerDeployment"
_POLL_S = 0.5


def serve_config(
    store_root: str,
    user_config: dict[str, Any],
    *,
    replicas: int = 1,
    runner_config: dict[str, Any] | None = None,
    name: str = "procvision",
    http: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The Serve config of one ProcVision application (the content of a `serve deploy` file)."""
    parse_user_config(user_config)  # a bad release is refused here, before Serve sees it
    app = {
        "name": name,
        "route_prefix": "/",
        "import_path": APP_IMPORT_PATH,
        "args": {"store_root": store_root, "runner_config": dict(runner_config or {})},
        "deployments": [
            {"name": DEPLOYMENT_NAME, "num_replicas": replicas, "user_config": user_config}
        ],
    }
    config: dict[str, Any] = {"proxy_location": "HeadOnly", "applications": [app]}
    if http is not None:
        config["http_options"] = dict(http)
    return config


def apply_config(config: dict[str, Any], timeout_s: float = 600.0) -> None:
    """Apply a Serve config to the running Serve; return when every replica applied it."""
    from ray.serve.context import _get_global_client

    schema = ServeDeploySchema.parse_obj(config)
    client = _get_global_client()
    if client is None:
        raise RunnerError("Serve is not running on this Ray cluster (serve.start first)")
    client.deploy_apps(schema)
    deadline = time.monotonic() + timeout_s
    _wait_running([app.name for app in schema.applications], deadline, timeout_s)
    # RUNNING can still be the status from before the change: wait for the replicas to say so
    for app in config["applications"]:
        for spec in app.get("deployments", []):
            if spec.get("name") == DEPLOYMENT_NAME and "user_config" in spec:
                want = config_digest(spec["user_config"])
                _wait_applied(app["name"], int(spec.get("num_replicas", 1)), want, deadline)


def _wait_applied(app: str, replicas: int, want: str, deadline: float) -> None:
    handle = serve.get_app_handle(app)
    applied: set[int] = set()
    while len(applied) < replicas:
        if time.monotonic() > deadline:
            raise RunnerError(f"{app}: {len(applied)} of {replicas} replicas applied {want}")
        state = handle.state.remote().result(timeout_s=max(1.0, deadline - time.monotonic()))
        if state["applied"] == want and state["readiness"]["ready"]:
            applied.add(int(state["replica_pid"]))
        else:
            time.sleep(_POLL_S)


def _wait_running(names: list[str], deadline: float, timeout_s: float) -> None:
    while True:
        apps = serve.status().applications
        states = {n: str(apps[n].status) if n in apps else "MISSING" for n in names}
        if all(s.endswith("RUNNING") for s in states.values()):
            return
        failed = {n: apps[n].message for n, s in states.items() if "FAIL" in s}
        if failed:
            raise RunnerError(f"Serve could not deploy {failed}")
        if time.monotonic() > deadline:
            raise RunnerError(f"Serve applications not RUNNING after {timeout_s} s: {states}")
        time.sleep(_POLL_S)
