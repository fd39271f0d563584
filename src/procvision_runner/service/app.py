"""create_app: the wiring of routers, middleware and error handlers over a manager and a Runner."""

import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import Response

from ..metrics import ServiceMetrics
from .context import ServiceContext
from .errors import install_error_handlers
from .guard import RequestGuard
from .health import health_router
from .routes_inspect import inspect_router
from .routes_packages import packages_router
from .routes_sessions import sessions_router
from .settings import ServiceConfig

__all__ = ["create_app"]

log = logging.getLogger("procvision_runner.service")


def _version() -> str:
    try:
        from procvision_algorithm_sdk._version import __version__

        return str(__version__)
    except Exception:
        return "0"


def _limit_for(cfg: ServiceConfig) -> Callable[[str], int]:
    def limit_for(path: str) -> int:
        if path in ("/algorithms/install", "/algorithms/validate"):
            return cfg.max_upload_bytes
        if path == "/inspect":
            return cfg.max_inspect_bytes
        return cfg.max_request_bytes

    return limit_for


def _is_protected(method: str, path: str) -> bool:
    if method in ("GET", "HEAD", "OPTIONS"):
        return path.startswith("/sessions/")
    return True


def _lifespan(
    ctx: ServiceContext, start_packages: bool
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    startup = ctx.startup

    def start_worker() -> None:
        try:
            if start_packages:
                with ctx.manage_lock:  # management calls wait until the start-up warm-up is done
                    ctx.manager.start()
        except Exception as exc:
            log.exception("starting the active packages failed")
            startup.error = f"{type(exc).__name__}: {exc}"
        finally:
            startup.done.set()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        startup.thread = threading.Thread(target=start_worker, name="procvision-start", daemon=True)
        startup.thread.start()
        yield
        # Do not hang shutdown on a slow warm-up; the Runner's close() stops what it started.
        await anyio.to_thread.run_sync(startup.thread.join, 5.0)

    return lifespan


def create_app(
    manager: Any,
    runner: Any,
    config: ServiceConfig | None = None,
    *,
    start_packages: bool = True,
) -> FastAPI:
    """Build the HTTP app over a PackageManager and its Runner (start_packages: warm on start)."""
    cfg = config or ServiceConfig()
    metrics = ServiceMetrics(runner)
    runner.add_call_observer(metrics.observe)
    ctx = ServiceContext(manager=manager, runner=runner, cfg=cfg, metrics=metrics)

    app = FastAPI(
        title="ProcVision Runner",
        version=_version(),
        description=(
            "Package management, inspection, health and metrics of a resident ProcVision "
            "Runner. Errors are `{error_code, message}` with codes from the ProcVision table."
        ),
        lifespan=_lifespan(ctx, start_packages),
    )
    app.state.metrics = metrics
    app.state.startup = ctx.startup
    app.add_middleware(
        RequestGuard,
        limit_for=_limit_for(cfg),
        is_protected=_is_protected,
        token=cfg.token or None,
    )
    install_error_handlers(app)

    @app.middleware("http")
    async def _count_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        metrics.count_request(template, request.method, response.status_code)
        return response

    for router in (
        packages_router(ctx),
        inspect_router(ctx),
        sessions_router(ctx),
        health_router(ctx),
    ):
        app.include_router(router)
    return app
