"""/healthz (liveness), /readyz (readiness details) and /metrics (Prometheus)."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from .context import ServiceContext, Startup
from .models import Health, Readiness

__all__ = ["health_router", "readiness"]


def readiness(manager: Any, runner: Any, startup: Startup) -> dict[str, Any]:
    """Readiness details: ready only when every active version is loaded, READY and routed."""
    problems: list[str] = []
    started = startup.done.is_set()
    if not started:
        problems.append("starting: active packages are being loaded and warmed")
    if startup.error:
        problems.append(f"start-up failed: {startup.error}")
    try:
        active = {pid: dict(m) for pid, m in manager.active().items()}
    except Exception as exc:
        active = {}
        problems.append(f"cannot read the active mappings: {exc}")
    packages = [dict(p) for p in runner.packages()]
    routes = {pid: (key[0], key[1]) for pid, key in runner.routes().items()}
    by_key = {(str(p.get("name")), str(p.get("version"))): p for p in packages}
    for pid, mapping in sorted(active.items()):
        key = (str(mapping.get("name")), str(mapping.get("version")))
        pkg = by_key.get(key)
        if pkg is None:
            problems.append(f"{pid}: {key[0]} {key[1]} is not loaded")
        elif pkg.get("state") != "READY":
            problems.append(f"{pid}: {key[0]} {key[1]} is {pkg.get('state')}")
        elif routes.get(pid) != key:
            problems.append(f"{pid}: not routed to {key[0]} {key[1]}")
    for pkg in packages:
        if pkg.get("state") == "FAILED":
            problems.append(f"{pkg.get('name')} {pkg.get('version')} is FAILED")
    summary = [
        {k: v for k, v in p.items() if k in ("name", "version", "state", "workers")}
        for p in packages
    ]
    return {
        "ready": not problems,
        "started": started,
        "problems": problems,
        "active": active,
        "packages": summary,
    }


def health_router(ctx: ServiceContext) -> APIRouter:
    """The unauthenticated probes: liveness, readiness and metrics."""
    router = APIRouter()

    @router.get("/healthz", response_model=Health, summary="The process answers")
    async def healthz() -> dict[str, str]:
        """Liveness."""
        return {"status": "ok"}

    @router.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "not ready (details inside)"}},
        summary="Every active version warm, none FAILED",
    )
    async def readyz() -> JSONResponse:
        """Readiness with details."""
        details = await run_in_threadpool(readiness, ctx.manager, ctx.runner, ctx.startup)
        return JSONResponse(details, status_code=200 if details["ready"] else 503)

    @router.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
        summary="Prometheus metrics",
    )
    async def prometheus() -> Response:
        """Prometheus text exposition."""
        body = await run_in_threadpool(ctx.metrics.render)
        return Response(body, media_type=ctx.metrics.content_type)

    return router
