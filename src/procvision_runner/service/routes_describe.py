"""What a package is: GET /algorithms/{name}/{version} and GET /pids/{pid} (steps, param specs)."""

import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from procvision_algorithm_sdk.errors import INVALID_PARAMS, INVALID_PID
from procvision_algorithm_sdk.generation import APIS, manifest_api

from .context import ServiceContext
from .errors import ApiError
from .models import NAME_PATTERN, PID_PATTERN, responses
from .results import PackageDescription, PidDescription

__all__ = ["api_generation", "describe_package", "describe_pid", "describe_router"]

_MAX_MANIFEST_BYTES = 1024**2


def api_generation(manifest: dict[str, Any], info: dict[str, Any] | None) -> str:
    """ "lifecycle" (get_info, pre_execute, execute) or "execute-only" (contract section 11)."""
    if info and info.get("api") in APIS:
        return str(info["api"])  # the worker's own word (execute-only info is synthesized)
    if info and isinstance(info.get("supported_pids"), list):
        return "lifecycle"  # get_info answered: only the lifecycle API has it
    return manifest_api(manifest)


def _read_manifest(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    file = Path(path) / "manifest.json"
    try:
        with open(file, "rb") as fh:
            data = fh.read(_MAX_MANIFEST_BYTES + 1)
        value = json.loads(data) if len(data) <= _MAX_MANIFEST_BYTES else {}
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _loaded(runner: Any, name: str, version: str) -> dict[str, Any] | None:
    for item in runner.packages():
        if item.get("name") == name and item.get("version") == version:
            return dict(item)
    return None


def _steps(info: dict[str, Any] | None, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    for source in (info or {}, manifest):
        steps = source.get("steps")
        if isinstance(steps, list) and steps:
            return [s for s in steps if isinstance(s, dict)]
    return []


def describe_package(manager: Any, runner: Any, name: str, version: str) -> dict[str, Any]:
    """Manifest, get_info (live when loaded), steps with their param specs, API generation."""
    entries = [e for e in manager.list(None, name) if str(e.get("version")) == version]
    entry = entries[0] if entries else None
    loaded = _loaded(runner, name, version)
    if entry is None and loaded is None:
        raise ApiError(404, INVALID_PARAMS, f"{name} {version} is not installed")
    manifest = _read_manifest(entry.get("path") if entry else None)
    info = loaded.get("info") if loaded else None
    info = dict(info) if isinstance(info, dict) and info else None
    pids = (info or manifest).get("supported_pids")
    return {
        "name": name,
        "version": version,
        "description": (info or {}).get("description") or manifest.get("description"),
        "state": entry.get("state") if entry else "loaded",
        "loaded_state": loaded.get("state") if loaded else None,
        "supported_pids": [str(p) for p in pids] if isinstance(pids, list) else [],
        "active_pids": list(entry.get("active_pids", []))
        if entry
        else list(loaded.get("pids", []) if loaded else []),
        "api_generation": api_generation(manifest, info),
        "steps": _steps(info, manifest),
        "steps_source": "get_info" if info and _steps(info, {}) else "manifest",
        "manifest": manifest,
        "info": info,
    }


def describe_pid(manager: Any, runner: Any, pid: str) -> dict[str, Any]:
    """The package a pid is routed to (or bound to in the store) and its steps."""
    routed = runner.routes().get(pid)
    binding = manager.active().get(pid)
    if routed is not None:
        name, version = str(routed[0]), str(routed[1])
    elif binding is not None:
        name, version = str(binding["name"]), str(binding["version"])
    else:
        raise ApiError(404, INVALID_PID, f"pid {pid} is not bound to any package")
    package = describe_package(manager, runner, name, version)
    return {
        "pid": pid,
        "package": {"name": name, "version": version},
        "routed": routed is not None,
        "activated_at": binding.get("activated_at") if binding else None,
        "state": package["loaded_state"] or package["state"],
        "api_generation": package["api_generation"],
        "steps": package["steps"],
    }


def describe_router(ctx: ServiceContext) -> APIRouter:
    """Read-only package and pid descriptions for a station UI's parameter panel."""
    router = APIRouter()
    manager, runner = ctx.manager, ctx.runner
    Name = Annotated[str, PathParam(pattern=NAME_PATTERN)]

    @router.get(
        "/algorithms/{name}/{version}",
        response_model=PackageDescription,
        response_model_exclude_unset=True,
        responses=responses(404, 422),
        summary="One installed package: manifest, get_info, steps and parameter specs",
    )
    async def package(name: Name, version: Name) -> Any:
        """Describe an installed (or loaded) package version."""
        return await run_in_threadpool(describe_package, manager, runner, name, version)

    @router.get(
        "/pids/{pid}",
        response_model=PidDescription,
        response_model_exclude_unset=True,
        responses=responses(404, 422),
        summary="The active package of a pid and its steps",
    )
    async def pid_info(pid: Annotated[str, PathParam(pattern=PID_PATTERN)]) -> Any:
        """Describe what a pid runs."""
        return await run_in_threadpool(describe_pid, manager, runner, pid)

    return router
