"""/inspect: one frame (PNG/JPEG or raw pixels) through a step or one phase of the Runner."""

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from procvision_algorithm_sdk.contract import find_unjsonable
from procvision_algorithm_sdk.errors import IMAGE_LOAD_FAILED, INVALID_PARAMS

from ..leases import LeaseError, LeaseRegistry
from .context import ServiceContext
from .decoding import decode_image
from .errors import ApiError
from .inspect_form import InspectForm, inspect_request_body, parsed_form, read_inspect_form
from .models import responses
from .results import InspectResult
from .routes_frames import ClientId, client_of, lease_error, require_local

__all__ = [
    "answer_form",
    "answer_lease_now",
    "decode_image",
    "error_result",
    "inspect_router",
    "parse_json_field",
    "run_inspection",
]


def error_result(code: str, message: str, package: dict[str, Any] | None) -> dict[str, Any]:
    """A Runner-shaped ERROR result for a call the service answers itself."""
    return {
        "status": "ERROR",
        "message": message,
        "error_code": code,
        "data": {},
        "debug": {},
        "timings": {"queue_ms": 0.0, "transfer_ms": 0.0, "algorithm_ms": 0.0, "total_ms": 0.0},
        "package": package,
    }


def _parse_json(name: str, text: str, kind: type, kind_name: str) -> Any:
    """A form field holding JSON of one kind, checked to be plain JSON (422 / 1006 otherwise)."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ApiError(422, INVALID_PARAMS, f"{name} is nested too deeply") from None
    except ValueError as exc:
        raise ApiError(422, INVALID_PARAMS, f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, kind):
        raise ApiError(422, INVALID_PARAMS, f"{name} must be a JSON {kind_name}")
    # the Runner sends these on as JSON: what it could not encode is refused here, not there
    problems = find_unjsonable(value, name)
    if problems:
        raise ApiError(422, INVALID_PARAMS, f"{name}: {problems[0].message}")
    return value


def parse_json_field(name: str, text: str | None) -> dict[str, Any] | None:
    """A form field holding a JSON object (user_params, session_context); empty is None."""
    if text is None or text == "":
        return None
    value: dict[str, Any] = _parse_json(name, text, dict, "object")
    return value


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON number")


async def _raw_frame(
    raw: UploadFile,
    width: int | None,
    height: int | None,
    channels: int | None,
    color_space: str | None,
    max_bytes: int,
) -> tuple[np.ndarray, str]:
    if width is None or height is None:
        raise ApiError(422, INVALID_PARAMS, "raw pixels need width and height")
    chans = channels or (1 if color_space == "GRAY" else 3)
    if chans not in (1, 3):
        raise ApiError(422, INVALID_PARAMS, "channels must be 1 or 3")
    space = color_space or ("GRAY" if chans == 1 else "RGB")
    if (chans == 1) != (space == "GRAY"):
        raise ApiError(422, INVALID_PARAMS, f"color_space {space} needs channels 3 (1: GRAY)")
    expected = width * height * chans
    if expected > max_bytes:
        raise ApiError(413, INVALID_PARAMS, "the raw frame is larger than the request limit")
    data = await raw.read()
    if len(data) != expected:
        raise ApiError(
            422,
            INVALID_PARAMS,
            f"raw part has {len(data)} bytes; {width}x{height}x{chans} needs {expected}",
        )
    frame = np.frombuffer(data, dtype=np.uint8)
    shape = (height, width) if chans == 1 else (height, width, chans)
    return frame.reshape(shape), space


def parse_json_list(name: str, text: str) -> list[Any]:
    """A form field holding a JSON list (guide_info), checked to be plain JSON."""
    value: list[Any] = _parse_json(name, text, list, "list")
    return value


def guide_fields(form: InspectForm, files: Mapping[str, UploadFile]) -> dict[str, Any]:
    """The execute-only fields that need no decoding (step_desc, guide_info), checked."""
    out: dict[str, Any] = {}
    if form.step_desc is not None:
        out["step_desc"] = form.step_desc
    if form.guide_info is not None:
        out["guide_info"] = parse_json_list("guide_info", form.guide_info)
    guide_image, guide_raw = files.get("guide_image"), files.get("guide_raw")
    if guide_image is not None and guide_raw is not None:
        raise ApiError(422, INVALID_PARAMS, "send at most one of 'guide_image', 'guide_raw'")
    geometry = (form.guide_width, form.guide_height, form.guide_channels)
    if guide_raw is None and any(v is not None for v in geometry):
        raise ApiError(422, INVALID_PARAMS, "guide_width/height/channels go with 'guide_raw'")
    return out


@contextlib.asynccontextmanager
async def guide_inputs(
    ctx: ServiceContext, form: InspectForm, files: dict[str, UploadFile]
) -> AsyncIterator[dict[str, Any]]:
    """The execute-only fields of /inspect; a decoded guide image stays in the decode budget
    until the call is answered. An undecodable guide image yields `guide_error`."""
    out = guide_fields(form, files)
    guide_image, guide_raw = files.get("guide_image"), files.get("guide_raw")
    if guide_raw is not None:
        array, space = await _raw_frame(
            guide_raw,
            form.guide_width,
            form.guide_height,
            form.guide_channels,
            form.guide_color_space,
            ctx.cfg.max_inspect_bytes,
        )
        yield {**out, "guide_frame": array, "guide_color_space": space}
        return
    if guide_image is None:
        yield out
        return
    async with ctx.decoder.decoded(await guide_image.read()) as (decoded, why):
        if decoded is None:
            yield {**out, "guide_error": f"guide_image: {why}"}
        else:
            yield {**out, "guide_frame": decoded, "guide_color_space": "RGB"}


def run_inspection(
    runner: Any, phase: str, pid: str, step_index: int, frame: Any, **fields: Any
) -> Callable[[], dict[str, Any]]:
    """The Runner call of one inspection, to run in a worker thread."""
    calls = {"step": runner.run_step, "pre": runner.pre_execute, "execute": runner.execute}
    call = calls[phase]

    def run() -> dict[str, Any]:
        result: dict[str, Any] = call(pid, step_index, frame, **fields)
        return result

    return run


@dataclass(frozen=True)
class _Target:
    """What one /inspect call runs: pid, step, phase, session and the Runner call's fields."""

    pid: str
    step_index: int
    phase: str
    session_id: str | None
    fields: dict[str, Any]

    def run(self, runner: Any, frame: Any, color_space: str) -> Callable[[], dict[str, Any]]:
        """The Runner call on `frame`, to run in a worker thread."""
        return run_inspection(
            runner,
            self.phase,
            self.pid,
            self.step_index,
            frame,
            color_space=color_space,
            **self.fields,
        )


async def _answered(
    ctx: ServiceContext, target: _Target, run: Callable[[], dict[str, Any]], frame: Any
) -> JSONResponse:
    answer = await run_in_threadpool(run)
    ctx.publish(target.pid, target.step_index, target.session_id, answer, frame)  # page feed
    return JSONResponse(answer)


def _unreadable(ctx: ServiceContext, target: _Target, message: str, *, at: str) -> JSONResponse:
    """An image the service could not read, answered as the Runner would (1002) at phase `at`."""
    routed = ctx.runner.routes().get(target.pid)
    package = {"name": routed[0], "version": routed[1]} if routed else None
    ctx.metrics.count_rejected(target.pid, target.phase, IMAGE_LOAD_FAILED, package)
    failed = error_result(IMAGE_LOAD_FAILED, message, package)
    if target.phase != "step":
        return JSONResponse(failed)
    return JSONResponse({"pre_execute": None, "execute": None, at: failed})


def run_leased(
    ctx: ServiceContext,
    leases: LeaseRegistry,
    target: _Target,
    lease: str,
    who: str,
    seq: int | None,
    geometry: tuple[int | None, int | None, int | None],
    color_space: str | None,
) -> dict[str, Any]:
    """Check the lease out, run the call on its frame, hand it back (blocks: not on the loop)."""
    try:
        with leases.checkout(lease, who, seq=seq, geometry=geometry) as shared:
            answer = target.run(ctx.runner, shared, color_space or "RGB")()
    except LeaseError as exc:
        raise lease_error(exc) from None
    # the client's buffer is reused for its next frame: the page gets no pixels
    ctx.publish(target.pid, target.step_index, target.session_id, answer, None)
    return answer


def answer_lease_now(
    ctx: ServiceContext, leases: LeaseRegistry, values: Mapping[str, str], client: str | None
) -> dict[str, Any]:
    """Answer a form naming a lease in the calling thread (the local socket's connections).

    The same validation, checks and call as `POST /inspect` with `frame`; the caller is on
    this host by construction (a Unix socket).
    """
    form, files = read_inspect_form(values)
    target = target_of(form, guide_fields(form, files))
    if form.frame is None or files:
        raise ApiError(
            422,
            INVALID_PARAMS,
            "the local socket takes forms naming a frame lease (frame=<lease id>); "
            "upload images to POST /inspect over HTTP",
        )
    geometry = (form.height, form.width, form.channels)
    who = client_of(client)
    return run_leased(
        ctx, leases, target, form.frame, who, form.frame_seq, geometry, form.color_space
    )


async def _inspect_image(ctx: ServiceContext, target: _Target, image: UploadFile) -> JSONResponse:
    data = await image.read()
    # The decoded frame's pixels stay in the decode budget until the Runner answered.
    async with ctx.decoder.decoded(data) as (decoded, why):
        if decoded is None:
            return _unreadable(ctx, target, why, at="pre_execute")
        return await _answered(ctx, target, target.run(ctx.runner, decoded, "RGB"), decoded)


def target_of(form: InspectForm, guide: Mapping[str, Any]) -> _Target:
    """What a validated form asks the Runner to run (its JSON fields parsed and checked)."""
    params = parse_json_field("user_params", form.user_params)
    context = parse_json_field("session_context", form.session_context)
    fields = {
        "user_params": params,
        "session_id": form.session_id,
        "session_context": context,
        "camera_id": form.camera_id,
        "timestamp_ms": form.timestamp_ms,
        **{k: v for k, v in guide.items() if k != "guide_error"},
    }
    return _Target(form.pid, form.step_index, form.phase, form.session_id, fields)


async def inspect_fields(
    ctx: ServiceContext,
    leases: LeaseRegistry,
    request: Request,
    form: InspectForm,
    files: dict[str, UploadFile],
    guide: dict[str, Any],
    client: str | None,
) -> JSONResponse:
    """Run the inspection a validated form asks for (image, raw pixels or a lease)."""
    image, raw, frame = files.get("image"), files.get("raw"), form.frame
    target = target_of(form, guide)
    if sum(x is not None for x in (image, raw, frame)) != 1:
        raise ApiError(
            422, INVALID_PARAMS, "send exactly one of the parts 'image', 'raw' or 'frame'"
        )
    if "guide_error" in guide:
        return _unreadable(ctx, target, guide["guide_error"], at="execute")
    width, height, channels, space = form.width, form.height, form.channels, form.color_space
    if frame is not None:
        require_local(request)
        geometry = (height, width, channels)
        who = client_of(client)
        run = (ctx, leases, target, frame, who, form.frame_seq, geometry, space)
        return JSONResponse(await run_in_threadpool(run_leased, *run))
    if raw is not None:
        limit = ctx.cfg.max_inspect_bytes
        array, got = await _raw_frame(raw, width, height, channels, space, limit)
        return await _answered(ctx, target, target.run(ctx.runner, array, got), array)
    assert image is not None
    if width is not None or height is not None or channels is not None:
        raise ApiError(422, INVALID_PARAMS, "width/height/channels go with 'raw' only")
    return await _inspect_image(ctx, target, image)


async def answer_form(
    ctx: ServiceContext,
    leases: LeaseRegistry,
    request: Request,
    form: FormData | Mapping[str, str | UploadFile],
    client: str | None,
) -> JSONResponse:
    """Validate a parsed /inspect form and run the inspection it asks for (route and lane)."""
    fields, files = read_inspect_form(form)
    async with guide_inputs(ctx, fields, files) as guide:
        return await inspect_fields(ctx, leases, request, fields, files, guide, client)


def inspect_router(ctx: ServiceContext, leases: LeaseRegistry) -> APIRouter:
    """The inspection route; its answer is exactly the Runner API's dict."""
    router = APIRouter()

    @router.post(
        "/inspect",
        dependencies=ctx.auth,
        response_model=InspectResult,
        responses=responses(401, 403, 404, 409, 413, 422, 503),
        summary="Run a step (or one phase) on an uploaded image or a leased frame",
        openapi_extra={"requestBody": inspect_request_body()},
    )
    async def inspect(request: Request, client: ClientId = None) -> JSONResponse:
        """Inspect one frame; the answer is exactly the Runner API's dict (one type per phase).

        Lifecycle packages take user_params and a session; execute-only packages (original
        SDK 0.3.x) take the guide image (guide_image or guide_raw), step_desc and guide_info.
        """
        form = await parsed_form(request)
        try:
            return await answer_form(ctx, leases, request, form, client)
        finally:
            await form.close()

    return router
