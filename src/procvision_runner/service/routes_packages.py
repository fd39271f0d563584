"""/algorithms*: install, validate, (de)activate, switch, rollback, uninstall, list, active."""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from procvision_algorithm_sdk.errors import INVALID_PID, ProcVisionError

from .context import ServiceContext
from .errors import ApiError
from .models import NAME_PATTERN, ActivateRequest, RollbackRequest, responses
from .routes_jobs import JOB_ACCEPTED, start_install_job
from .uploads import UPLOAD_OPENAPI, receive_upload

__all__ = ["packages_router"]


def packages_router(ctx: ServiceContext) -> APIRouter:
    """Package management over the PackageManager; mutations run under the management lock."""
    router = APIRouter()
    _upload_routes(router, ctx)
    _binding_routes(router, ctx)
    _query_routes(router, ctx)
    return router


def _upload_routes(router: APIRouter, ctx: ServiceContext) -> None:
    """POST /algorithms/install and /algorithms/validate (a streamed zip upload each)."""
    manager, cfg, auth = ctx.manager, ctx.cfg, ctx.auth

    @router.post(
        "/algorithms/install",
        dependencies=auth,
        openapi_extra=UPLOAD_OPENAPI,
        response_model=dict[str, Any],
        responses={**JOB_ACCEPTED, **responses(400, 401, 409, 413, 422, 503)},
        summary="Install an offline package zip (synchronously, or as a job with async=true)",
    )
    async def install(
        request: Request,
        replace: Annotated[bool, Query(description="replace an inactive same version")] = False,
        keep_bundled_sdk: Annotated[
            bool,
            Query(description="keep a bundled original SDK (earlier protocol, frames as files)"),
        ] = False,
        background: Annotated[
            bool,
            Query(
                alias="async",
                description="answer 202 at once and install as a job (GET /jobs/{job_id})",
            ),
        ] = False,
    ) -> Any:
        """Install an uploaded zip; the registry entry, or with async=true 202 and a job."""
        if background:
            return await start_install_job(
                ctx, request, replace=replace, keep_bundled_sdk=keep_bundled_sdk
            )
        path = await receive_upload(request, ctx.upload_dir(), cfg.max_upload_bytes)
        try:
            entry = await ctx.managed(
                manager.install, path, replace=replace, keep_bundled_sdk=keep_bundled_sdk
            )
        finally:
            path.unlink(missing_ok=True)
        return dict(entry)

    @router.post(
        "/algorithms/validate",
        dependencies=auth,
        openapi_extra=UPLOAD_OPENAPI,
        responses=responses(401, 413, 422),
        summary="Check an offline package zip without installing it",
    )
    async def validate(request: Request) -> dict[str, Any]:
        """Validate an uploaded zip; returns the check report (PASS or FAIL)."""
        path = await receive_upload(request, ctx.upload_dir(), cfg.max_upload_bytes)
        try:
            report = await run_in_threadpool(manager.validate_zip, path)
        finally:
            path.unlink(missing_ok=True)
        return dict(report)


async def _on_bound_pid(
    ctx: ServiceContext, action: Callable[[str], dict[str, Any]], pid: str
) -> dict[str, Any]:
    """Run a store action on one pid's binding; a pid without a binding is 404 (1001)."""
    try:
        return dict(await ctx.managed(action, pid))
    except ProcVisionError as exc:
        if str(exc.error_code) == INVALID_PID:  # the pid has no mapping: nothing to act on
            raise ApiError(404, INVALID_PID, exc.message or str(exc)) from None
        raise


def _binding_routes(router: APIRouter, ctx: ServiceContext) -> None:
    """activate, switch, rollback and uninstall: the store mutations that move pids."""
    manager, auth = ctx.manager, ctx.auth

    @router.post(
        "/algorithms/activate",
        dependencies=auth,
        responses=responses(400, 401, 404, 409, 413, 422),
        summary="Bind pids to an installed version (workers warm first)",
    )
    async def activate(body: ActivateRequest) -> dict[str, Any]:
        """Activate a version for pids."""
        await ctx.known_version(body.name, body.version)
        return dict(await ctx.managed(manager.activate, body.name, body.version, list(body.pids)))

    @router.post(
        "/algorithms/switch",
        dependencies=auth,
        responses=responses(400, 401, 404, 409, 413, 422),
        summary="Move pids to another version without failing a call",
    )
    async def switch(body: ActivateRequest) -> dict[str, Any]:
        """Switch pids to a version."""
        await ctx.known_version(body.name, body.version)
        return dict(await ctx.managed(manager.switch, body.name, body.version, list(body.pids)))

    @router.post(
        "/algorithms/rollback",
        dependencies=auth,
        responses=responses(400, 401, 404, 409, 413, 422),
        summary="Re-activate the previous version for a pid",
    )
    async def rollback(body: RollbackRequest) -> dict[str, Any]:
        """Roll a pid back."""
        return await _on_bound_pid(ctx, manager.rollback, body.pid)

    @router.post(
        "/algorithms/deactivate",
        dependencies=auth,
        responses=responses(400, 401, 404, 409, 413, 422),
        summary="Unbind a pid (its workers stop when no other pid uses the version)",
    )
    async def deactivate(body: RollbackRequest) -> dict[str, Any]:
        """Deactivate a pid."""
        return await _on_bound_pid(ctx, manager.deactivate, body.pid)

    @router.delete(
        "/algorithms/{name}/{version}",
        dependencies=auth,
        responses=responses(401, 404, 409, 413, 422),
        summary="Uninstall a version (refused while active unless force)",
    )
    async def uninstall(
        name: Annotated[str, PathParam(pattern=NAME_PATTERN)],
        version: Annotated[str, PathParam(pattern=NAME_PATTERN)],
        force: bool = False,
    ) -> dict[str, Any]:
        """Uninstall a version."""
        await ctx.known_version(name, version)
        return dict(await ctx.managed(manager.uninstall, name, version, force=force))


def _query_routes(router: APIRouter, ctx: ServiceContext) -> None:
    """GET /algorithms and /algorithms/active (no token, no lock)."""
    manager = ctx.manager

    @router.get(
        "/algorithms",
        responses=responses(413, 422),
        summary="Installed packages",
    )
    async def list_algorithms(
        state: Annotated[str | None, Query(pattern=r"^[a-z]{1,20}$")] = None,
        name: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    ) -> list[dict[str, Any]]:
        """Registry entries, optionally filtered by state and name."""
        return [dict(e) for e in await run_in_threadpool(manager.list, state, name)]

    @router.get("/algorithms/active", responses=responses(413), summary="pid -> active version")
    async def active() -> dict[str, dict[str, Any]]:
        """The active mappings."""
        return {pid: dict(m) for pid, m in (await run_in_threadpool(manager.active)).items()}
