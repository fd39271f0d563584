"""/frames: frame leases for clients on the Runner's host (create, describe, release)."""

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from procvision_algorithm_sdk.errors import INVALID_PARAMS

from ..leases import CLIENT_PATTERN, LeaseError, LeaseRegistry
from .context import ServiceContext
from .errors import ApiError
from .guard import is_loopback
from .models import responses
from .results import FrameLease

__all__ = ["ClientId", "client_of", "frames_router", "lease_error", "require_local"]

LEASE_PATTERN = r"^fl_[A-Za-z0-9_-]{8,64}$"

ClientId = Annotated[
    str | None,
    Header(
        alias="X-ProcVision-Client",
        description="the client's own id (leases belong to it); pattern " + CLIENT_PATTERN,
    ),
]


class LeaseRequest(BaseModel):
    """The geometry of the frames the client will write (uint8, row-major, interleaved)."""

    model_config = ConfigDict(extra="forbid")
    height: int = Field(ge=1, le=65_535)
    width: int = Field(ge=1, le=65_535)
    channels: int = Field(default=3, ge=1, le=3, description="1 (GRAY) or 3 (RGB/BGR)")
    client_pid: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="reclaim the lease when this process ends"
    )


def lease_error(exc: LeaseError) -> ApiError:
    """The HTTP answer of a refused lease operation."""
    return ApiError(exc.status, exc.error_code, exc.message)


def require_local(request: Request) -> None:
    """Refuse (403) a lease operation from a client that is not on this host."""
    host = request.client.host if request.client else ""
    if not host or not is_loopback(host):
        raise ApiError(
            403,
            INVALID_PARAMS,
            f"frame leases are for clients on the Runner's host (loopback); {host or 'unknown'} "
            "is not: upload the frame (POST /inspect/raw) instead",
        )


def client_of(client: str | None) -> str:
    """The validated client id of a lease operation (422 when missing or malformed)."""
    import re

    if client is None or not re.fullmatch(CLIENT_PATTERN, client):
        raise ApiError(
            422,
            INVALID_PARAMS,
            f"lease operations need an X-ProcVision-Client header matching {CLIENT_PATTERN}",
        )
    return client


def _with_socket(ctx: ServiceContext, description: dict[str, Any]) -> dict[str, Any]:
    if ctx.local_socket is not None:
        description["local_socket"] = str(ctx.local_socket)
    return description


def frames_router(ctx: ServiceContext, leases: LeaseRegistry) -> APIRouter:
    """Lease routes; every one is refused off loopback."""
    router = APIRouter()
    LeaseId = Annotated[str, PathParam(pattern=LEASE_PATTERN)]

    @router.post(
        "/frames",
        dependencies=ctx.auth,
        response_model=FrameLease,
        response_model_exclude_unset=True,
        responses=responses(401, 403, 413, 422, 429),
        summary="Lease a shared-memory frame buffer (clients on this host)",
    )
    async def create(request: Request, body: LeaseRequest, client: ClientId = None) -> Any:
        """Create a Runner-owned segment for frames of this geometry; map it by its name."""
        require_local(request)
        who = client_of(client)
        try:
            made = await run_in_threadpool(
                leases.create, who, body.height, body.width, body.channels, body.client_pid
            )
        except LeaseError as exc:
            raise lease_error(exc) from None
        return _with_socket(ctx, made)

    @router.get(
        "/frames/{lease_id}",
        dependencies=ctx.auth,
        response_model=FrameLease,
        response_model_exclude_unset=True,
        responses=responses(401, 403, 404, 422),
        summary="Describe a lease this client holds",
    )
    async def describe(request: Request, lease_id: LeaseId, client: ClientId = None) -> Any:
        """The lease's segment name, size and layout."""
        require_local(request)
        try:
            return _with_socket(ctx, leases.describe(lease_id, client_of(client)))
        except LeaseError as exc:
            raise lease_error(exc) from None

    @router.delete(
        "/frames/{lease_id}",
        dependencies=ctx.auth,
        responses=responses(401, 403, 404, 409, 422),
        summary="Release a lease (its segment is unlinked)",
    )
    async def release(
        request: Request, lease_id: LeaseId, client: ClientId = None
    ) -> dict[str, str]:
        """Give a lease back."""
        require_local(request)
        try:
            await run_in_threadpool(leases.release, lease_id, client_of(client))
        except LeaseError as exc:
            raise lease_error(exc) from None
        return {"lease_id": lease_id, "status": "released"}

    return router
