"""Install jobs: `POST /algorithms/install?async=true` answers 202, `GET /jobs/{id}` follows it."""

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from procvision_algorithm_sdk.errors import INVALID_PARAMS, TIMEOUT, UNKNOWN_ERROR, ProcVisionError

from ..store.progress import ProgressFn
from .context import ServiceContext
from .errors import ApiError
from .jobs import JobsBusy
from .models import ErrorBody, responses
from .uploads import receive_upload

__all__ = ["JOB_ACCEPTED", "Job", "JobAccepted", "jobs_router", "start_install_job"]

JOB_PATTERN = r"^job_[A-Za-z0-9_-]{1,64}$"
JobStatus = Literal["queued", "running", "succeeded", "failed"]


class JobAccepted(BaseModel):
    """A job was started: follow it at `location` (also the `Location` header)."""

    job_id: str
    kind: Literal["install"]
    status: JobStatus
    phase: str
    location: str = Field(description="GET this path for the job's phase, log and outcome")


class JobLogLine(BaseModel):
    """One step the job reported."""

    seq: int = Field(description="1, 2, ...: the line's number in the job (lines are trimmed)")
    time: str = Field(description="ISO 8601, UTC")
    phase: str
    message: str


class Job(BaseModel):
    """A job: its status and phase, its log, and at the end its result or its error."""

    job_id: str
    kind: Literal["install"]
    status: JobStatus
    phase: str = Field(
        description="queued, check, unpack, venv, smoke, register, done; failed at the end "
        "of a failed job"
    )
    created_at: str
    started_at: str | None
    finished_at: str | None
    log: list[JobLogLine]
    result: dict[str, Any] | None = Field(
        description="succeeded: what the synchronous form answers (the registry entry)"
    )
    error: ErrorBody | None = Field(description="failed: the error and its code")


JOB_ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {
        "model": JobAccepted,
        "description": "with `async=true`: the install runs as a job; follow `Location`",
        "headers": {
            "Location": {"description": "the job's URL path", "schema": {"type": "string"}}
        },
    }
}


def _busy(exc: JobsBusy) -> ApiError:
    return ApiError(503, TIMEOUT, str(exc), {"Retry-After": "5"})


async def start_install_job(
    ctx: ServiceContext, request: Request, *, replace: bool, keep_bundled_sdk: bool
) -> JSONResponse:
    """Receive the zip, start its install as a job, answer 202 with the job's location."""
    try:
        ctx.jobs.check_room()  # before reading a body that may be gigabytes
    except JobsBusy as exc:
        raise _busy(exc) from None
    path = await receive_upload(request, ctx.upload_dir(), ctx.cfg.max_upload_bytes)
    manager = ctx.manager

    def install(progress: ProgressFn, cancelled: Callable[[], bool]) -> dict[str, Any]:
        with ctx.manage_lock:  # one store change at a time from this process, as synchronously
            if cancelled():
                raise ProcVisionError(
                    "the service stopped before the install began", error_code=UNKNOWN_ERROR
                )
            return dict(
                manager.install(
                    path, replace=replace, keep_bundled_sdk=keep_bundled_sdk, progress=progress
                )
            )

    def remove_upload() -> None:
        Path(path).unlink(missing_ok=True)

    try:
        job = await run_in_threadpool(ctx.jobs.submit, "install", install, remove_upload)
    except JobsBusy as exc:
        raise _busy(exc) from None
    location = f"/jobs/{job['job_id']}"
    body = {k: job[k] for k in ("job_id", "kind", "status", "phase")} | {"location": location}
    return JSONResponse(body, status_code=202, headers={"Location": location})


def jobs_router(ctx: ServiceContext) -> APIRouter:
    """GET /jobs/{job_id} (protected like the install that started it)."""
    router = APIRouter()

    @router.get(
        "/jobs/{job_id}",
        dependencies=ctx.auth,
        responses=responses(401, 404, 413, 422),
        summary="A job's status, phase and log; at the end its result or error",
    )
    async def get_job(
        job_id: Annotated[str, PathParam(pattern=JOB_PATTERN)],
    ) -> Job:
        """The job, while it runs and for a while after it ended (then 404)."""
        job = ctx.jobs.get(job_id)
        if job is None:
            raise ApiError(404, INVALID_PARAMS, f"no job {job_id!r} (unknown, or expired)")
        return Job.model_validate(job)

    return router
