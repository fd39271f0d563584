"""create_app: the wiring of routers, middleware and error handlers over a manager and a Runner."""

import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.formparsers import MultiPartParser
from starlette.types import ASGIApp

from ..archive import ArchiveLimits, ResultArchive
from ..leases import LeaseLimits, LeaseRegistry
from ..metrics import ServiceMetrics
from .access_log import AccessLog
from .context import ServiceContext
from .counting import RequestCounter
from .errors import install_error_handlers
from .guard import RequestGuard
from .health import health_router
from .lease_lane import LeaseLane
from .live import LiveFeed
from .local_lane import start_local_socket
from .openapi30 import to_openapi_30
from .routes_describe import describe_router
from .routes_frames import frames_router
from .routes_inspect import inspect_router
from .routes_jobs import jobs_router
from .routes_packages import packages_router
from .routes_page import docs_offline, mount_page_assets, page_router
from .routes_raw import raw_router
from .routes_sessions import sessions_router
from .settings import ServiceConfig

if TYPE_CHECKING:
    from ..runner import Runner
    from ..store.manager import PackageManager

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
        if path in ("/inspect", "/inspect/raw"):
            return cfg.max_inspect_bytes
        return cfg.max_request_bytes

    return limit_for


def _is_protected(method: str, path: str) -> bool:
    if method in ("GET", "HEAD", "OPTIONS"):
        return path.startswith(("/sessions/", "/jobs/"))
    return True


def _lifespan(
    ctx: ServiceContext, start_packages: bool, leases: LeaseRegistry
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
        local = await anyio.to_thread.run_sync(start_local_socket, ctx, leases, _is_protected)
        ctx.local_socket = None if local is None else local.path
        startup.thread = threading.Thread(target=start_worker, name="procvision-start", daemon=True)
        startup.thread.start()
        try:
            yield
        finally:
            if local is not None:
                ctx.local_socket = None
                await anyio.to_thread.run_sync(local.close)
            await anyio.to_thread.run_sync(leases.close)  # the leases' segments go with the app
            await anyio.to_thread.run_sync(ctx.decoder.close)
            # queued installs are cancelled, a running one is given its deadline to finish
            await anyio.to_thread.run_sync(ctx.jobs.close, float(ctx.cfg.jobs_shutdown_wait_s))
            if ctx.live is not None:
                await anyio.to_thread.run_sync(ctx.live.close)
        # Do not hang shutdown on a slow warm-up; the Runner's close() stops what it started.
        await anyio.to_thread.run_sync(startup.thread.join, 5.0)

    return lifespan


class ServiceApp(FastAPI):
    """FastAPI with the service's own layers outside the framework's middleware stack.

    Guard, counter, access log and the lease lane are plain ASGI; outside FastAPI's own layers
    (error, telemetry and body-limit middleware) a lease's call does not pass through those,
    which the lease budget of issue 15 has no room for. Every other request still does.
    """

    outer_layers: Callable[[ASGIApp], ASGIApp] | None = None

    def build_middleware_stack(self) -> ASGIApp:
        """The framework's stack, wrapped in the service's own layers."""
        stack = super().build_middleware_stack()
        return stack if self.outer_layers is None else self.outer_layers(stack)


def create_app(
    manager: "PackageManager",
    runner: "Runner",
    config: ServiceConfig | None = None,
    *,
    start_packages: bool = True,
) -> ServiceApp:
    """Build the HTTP app over a PackageManager and its Runner (start_packages: warm on start)."""
    cfg = config or ServiceConfig()
    metrics = ServiceMetrics(runner)
    runner.add_call_observer(metrics.observe)
    ctx = ServiceContext(manager=manager, runner=runner, cfg=cfg, metrics=metrics)
    if cfg.operator_page:
        ctx.live = LiveFeed(_archive(cfg, manager), recent=cfg.live_recent)
        runner.add_call_observer(ctx.live.observe)
    leases = LeaseRegistry(
        LeaseLimits(
            max_per_client=cfg.lease_max_per_client,
            max_bytes_per_client=cfg.lease_max_bytes_per_client,
            max_total_bytes=cfg.lease_max_total_bytes,
            idle_s=float(cfg.lease_idle_s),
        )
    )
    # Multipart parts stay in memory up to the inspect limit (the guard bounds every body):
    # spooling larger parts to a temporary file cost a thread hop per chunk and a read back.
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, cfg.max_inspect_bytes)

    app = ServiceApp(
        title="ProcVision Runner",
        version=_version(),
        description=(
            "Package management, inspection, health and metrics of a resident ProcVision "
            "Runner. Errors are `{error_code, message}` with codes from the ProcVision table."
        ),
        lifespan=_lifespan(ctx, start_packages, leases),
        # /docs and /redoc come from this process's own files when fastapi-offline is there
        docs_url=None if docs_offline() else "/docs",
        redoc_url=None if docs_offline() else "/redoc",
    )
    app.state.metrics = metrics
    app.state.startup = ctx.startup
    app.state.leases = leases
    app.state.decoder = ctx.decoder
    inspect = inspect_router(ctx, leases)

    def outer_layers(framework: ASGIApp) -> ASGIApp:
        # The access log is outermost (the guard's refusals are logged too); the lease lane is
        # innermost (its answers are guarded, counted and logged like the route's).
        lane = LeaseLane(framework, ctx, leases, inspect.routes[0])
        guard = RequestGuard(lane, _limit_for(cfg), _is_protected, cfg.token or None)
        return AccessLog(RequestCounter(guard, metrics))

    app.outer_layers = outer_layers
    install_error_handlers(app)

    @app.get("/openapi-3.0.json", include_in_schema=False)
    async def openapi_30() -> JSONResponse:
        """The same document as OpenAPI 3.0.3, for generators that do not take 3.1."""
        return JSONResponse(to_openapi_30(app.openapi()))

    for router in (
        packages_router(ctx),
        inspect,
        raw_router(ctx, leases),
        frames_router(ctx, leases),
        describe_router(ctx),
        sessions_router(ctx),
        jobs_router(ctx),
        health_router(ctx),
    ):
        app.include_router(router)
    if ctx.live is not None:
        app.include_router(page_router(ctx, ctx.live))
    mount_page_assets(app)
    return app


def _archive(cfg: ServiceConfig, manager: "PackageManager") -> ResultArchive:
    """The page's result archive under `archive_dir` (default: <store>/archive)."""
    root = Path(cfg.archive_dir) if cfg.archive_dir else Path(manager.store.root) / "archive"
    limits = ArchiveLimits(
        max_count=cfg.archive_max_count,
        max_bytes=cfg.archive_max_bytes,
        ok_sample_every=cfg.archive_ok_sample_every,
    )
    return ResultArchive(root, limits)
