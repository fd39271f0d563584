"""POST /inspect/raw: the frame's pixels as the request body, streamed straight into a segment.

The body goes chunk by chunk into a service-owned segment of the lease registry (no temporary
file, no second copy), which the worker then reads by name like a client's lease. Upload
segments are reused for the next request of the same geometry.
"""

import contextlib
import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from procvision_algorithm_sdk.errors import INVALID_PARAMS

from ..leases import LeaseError, LeaseRegistry
from .context import ServiceContext
from .errors import ApiError
from .models import PID_PATTERN, SESSION_PATTERN, responses
from .results import InspectResult
from .routes_frames import lease_error
from .routes_inspect import parse_json_field, run_inspection

__all__ = ["UPLOAD_CLIENT", "UploadBuffers", "raw_router"]

# Not a valid client id (CLIENT_PATTERN), so no HTTP client can name these leases.
UPLOAD_CLIENT = "~upload"

RAW_BODY_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "height x width x channels uint8 pixels, row-major, channels interleaved",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


class UploadBuffers:
    """Upload segments kept for reuse, a few per geometry (the registry bounds them in total)."""

    def __init__(self, leases: LeaseRegistry, per_shape: int = 4) -> None:
        self.leases = leases
        self.per_shape = per_shape
        self._lock = threading.Lock()
        self._free: dict[tuple[int, int, int], list[str]] = {}

    def take(self, height: int, width: int, channels: int) -> str:
        """A lease id of a free upload segment of this geometry (created when none is free)."""
        key = (height, width, channels)
        while True:
            with self._lock:
                free = self._free.get(key)
                lease_id = free.pop() if free else None
            if lease_id is None:
                return self._create(height, width, channels)
            if lease_id in self.leases.ids(UPLOAD_CLIENT):
                return lease_id  # else it expired while unused: take another

    def _create(self, height: int, width: int, channels: int) -> str:
        """A new upload segment; at the registry's bound, kept free ones (any shape) go first."""
        try:
            return str(self.leases.create(UPLOAD_CLIENT, height, width, channels)["lease_id"])
        except LeaseError as exc:
            with self._lock:
                kept = [i for ids in self._free.values() for i in ids]
                self._free.clear()
            if exc.status != 429 or not kept:
                raise
        for lease_id in kept:
            with contextlib.suppress(LeaseError):
                self.leases.release(lease_id, UPLOAD_CLIENT)
        return str(self.leases.create(UPLOAD_CLIENT, height, width, channels)["lease_id"])

    def give(self, lease_id: str, key: tuple[int, int, int]) -> None:
        """Return a segment for reuse, or release it when enough are kept."""
        with self._lock:
            free = self._free.setdefault(key, [])
            if len(free) < self.per_shape:
                free.append(lease_id)
                return
        with contextlib.suppress(LeaseError):
            self.leases.release(lease_id, UPLOAD_CLIENT)


async def _receive_into(request: Request, view: memoryview) -> int:
    """Copy the body into `view`; 422 as soon as it is longer than the frame."""
    size = len(view)
    received = 0
    async for chunk in request.stream():
        end = received + len(chunk)
        if end > size:
            raise ApiError(422, INVALID_PARAMS, f"the body is longer than the frame's {size} bytes")
        view[received:end] = chunk
        received = end
    return received


def raw_router(ctx: ServiceContext, leases: LeaseRegistry) -> APIRouter:
    """The raw upload route (remote or simple clients; same answer as /inspect)."""
    router = APIRouter()
    runner = ctx.runner
    buffers = UploadBuffers(leases)

    @router.post(
        "/inspect/raw",
        dependencies=ctx.auth,
        response_model=InspectResult,
        responses=responses(401, 413, 422, 429),
        openapi_extra=RAW_BODY_OPENAPI,
        summary="Run a step on raw pixels sent as the request body (fields in the query)",
    )
    async def inspect_raw(
        request: Request,
        pid: Annotated[str, Query(pattern=PID_PATTERN)],
        step_index: Annotated[int, Query(ge=0, le=10_000)],
        height: Annotated[int, Query(ge=1, le=65_535)],
        width: Annotated[int, Query(ge=1, le=65_535)],
        channels: Annotated[int, Query(ge=1, le=3, description="1 (GRAY) or 3")] = 3,
        phase: Annotated[Literal["step", "pre", "execute"], Query()] = "step",
        color_space: Annotated[Literal["RGB", "BGR", "GRAY"] | None, Query()] = None,
        user_params: Annotated[str | None, Query(description="JSON object")] = None,
        session_id: Annotated[str | None, Query(pattern=SESSION_PATTERN)] = None,
        session_context: Annotated[str | None, Query(description="JSON object")] = None,
        camera_id: Annotated[str | None, Query(max_length=128)] = None,
        timestamp_ms: Annotated[int | None, Query(ge=0, le=2**53)] = None,
    ) -> JSONResponse:
        """Inspect the frame in the body; the answer is the Runner API's dict."""
        if channels not in (1, 3):
            raise ApiError(422, INVALID_PARAMS, "channels must be 1 or 3")
        space = color_space or ("GRAY" if channels == 1 else "RGB")
        if (channels == 1) != (space == "GRAY"):
            raise ApiError(422, INVALID_PARAMS, f"color_space {space} needs channels 3 (1: GRAY)")
        expected = height * width * channels
        if expected > ctx.cfg.max_inspect_bytes:
            raise ApiError(413, INVALID_PARAMS, "the raw frame is larger than the request limit")
        fields = {
            "user_params": parse_json_field("user_params", user_params),
            "session_id": session_id,
            "session_context": parse_json_field("session_context", session_context),
            "camera_id": camera_id,
            "timestamp_ms": timestamp_ms,
            "color_space": space,
        }
        key = (height, width, channels)
        try:
            lease_id = await run_in_threadpool(buffers.take, *key)
        except LeaseError as exc:
            raise lease_error(exc) from None
        try:
            with leases.writable(lease_id, UPLOAD_CLIENT) as view:
                received = await _receive_into(request, view)
            if received != expected:
                raise ApiError(
                    422,
                    INVALID_PARAMS,
                    f"the body has {received} bytes; {width}x{height}x{channels} needs {expected}",
                )
            with leases.checkout(lease_id, UPLOAD_CLIENT) as shared:
                run = run_inspection(runner, phase, pid, step_index, shared, **fields)
                answer = await run_in_threadpool(run)
                ctx.publish(pid, step_index, session_id, answer)  # the segment is reused
                return JSONResponse(answer)
        except LeaseError as exc:
            raise lease_error(exc) from None
        finally:
            buffers.give(lease_id, key)

    return router
