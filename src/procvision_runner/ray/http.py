"""POST /inspect through Ray Serve's HTTP proxy: the station's parts, plus the carried session.

The proxy hands each request to any replica, so the session's state travels as it does through
a handle: the answer is `{"result", "session_state", "node", "replica_pid"}` and the caller
sends `session_state` (a JSON object part) with the product's next step. The frame is the
station's `image` part (PNG/JPEG/TIFF) or `raw` pixels with width/height/channels/color_space.
Every refusal is `{"error_code", "message"}` with a 4xx status, as on the station.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from procvision_algorithm_sdk.errors import IMAGE_LOAD_FAILED, INVALID_PARAMS, INVALID_PID

from ..service.decoding import decode_image
from ..service.errors import ApiError, error_response
from ..service.models import PID_PATTERN, SESSION_PATTERN
from ..service.routes_inspect import parse_json_field

__all__ = ["MAX_PART_BYTES", "MAX_REQUEST_BYTES", "inspect_request"]

MAX_PART_BYTES = 64 * 1024**2  # one frame part: 8000 x 2800 x 3 raw pixels
MAX_REQUEST_BYTES = MAX_PART_BYTES + 1024**2  # the frame and the text fields
MAX_IMAGE_PIXELS = 64_000_000  # the station's decompression-bomb guard
_TEXT_FIELDS = (
    *("pid", "step_index", "session_id", "session_state", "session_context", "user_params"),
    *("width", "height", "channels", "color_space"),
)

StepCall = Callable[..., Awaitable[dict[str, Any]]]


async def inspect_request(request: Request, run_step: StepCall) -> JSONResponse:
    """Answer one HTTP request to the deployment: POST /inspect, else 404/405."""
    if request.url.path.rstrip("/") != "/inspect":
        return error_response(404, INVALID_PARAMS, f"no route {request.url.path}")
    if request.method != "POST":
        return error_response(405, INVALID_PARAMS, "/inspect takes POST")
    length = request.headers.get("content-length", "")
    if not length.isdigit():
        return error_response(411, INVALID_PARAMS, "/inspect needs a Content-Length")
    if int(length) > MAX_REQUEST_BYTES:
        return error_response(413, INVALID_PARAMS, f"request larger than {MAX_REQUEST_BYTES} bytes")
    try:
        async with request.form(max_files=1, max_fields=32, max_part_size=MAX_PART_BYTES) as form:
            call = await _parse(form)
        answer = await run_step(call.pop("pid"), call.pop("step_index"), call.pop("frame"), **call)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except HTTPException as exc:  # a malformed multipart body, or a part over its limit
        return error_response(exc.status_code, INVALID_PARAMS, str(exc.detail))
    return JSONResponse(answer)


async def _parse(form: FormData) -> dict[str, Any]:
    text = {k: _text(form, k) for k in _TEXT_FIELDS}
    pid = text["pid"]
    if pid is None or not re.fullmatch(PID_PATTERN, pid):
        raise ApiError(422, INVALID_PID, "pid is missing or not a safe name")
    step_index = _int("step_index", text["step_index"], 0, 10_000)
    session_id = text["session_id"]
    if session_id is not None and not re.fullmatch(SESSION_PATTERN, session_id):
        raise ApiError(422, INVALID_PARAMS, "session_id is not a valid session id")
    state = parse_json_field("session_state", text["session_state"])
    if state is not None and session_id is None:
        raise ApiError(422, INVALID_PARAMS, "a session_state needs its session_id")
    frame, space = await _frame(form, text)
    return {
        "pid": pid,
        "step_index": step_index,
        "frame": frame,
        "color_space": space,
        "session_id": session_id,
        "session_state": state,
        "session_context": parse_json_field("session_context", text["session_context"]),
        "user_params": parse_json_field("user_params", text["user_params"]),
    }


async def _frame(form: FormData, text: dict[str, str | None]) -> tuple[np.ndarray, str]:
    image, raw = form.get("image"), form.get("raw")
    if sum(isinstance(p, UploadFile) for p in (image, raw)) != 1:
        raise ApiError(422, INVALID_PARAMS, "send exactly one of the file parts 'image' or 'raw'")
    if isinstance(image, UploadFile):
        decoded, why = decode_image(await image.read(), MAX_IMAGE_PIXELS)
        if decoded is None:
            raise ApiError(422, IMAGE_LOAD_FAILED, f"image: {why}")
        return decoded, "RGB"
    assert isinstance(raw, UploadFile)
    width = _int("width", text["width"], 1, 65_535)
    height = _int("height", text["height"], 1, 65_535)
    space = text["color_space"] or "RGB"
    if space not in ("RGB", "BGR", "GRAY"):
        raise ApiError(422, INVALID_PARAMS, "color_space must be RGB, BGR or GRAY")
    channels = 1 if space == "GRAY" else 3
    if text["channels"] is not None and _int("channels", text["channels"], 1, 3) != channels:
        raise ApiError(422, INVALID_PARAMS, f"color_space {space} needs channels {channels}")
    data = await raw.read()
    if len(data) != width * height * channels:
        raise ApiError(
            422,
            INVALID_PARAMS,
            f"raw has {len(data)} bytes; {width}x{height}x{channels} needs "
            f"{width * height * channels}",
        )
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.frombuffer(data, dtype=np.uint8).reshape(shape), space


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(422, INVALID_PARAMS, f"{name} must be a text field")
    return value


def _int(name: str, value: str | None, low: int, high: int) -> int:
    if value is None:
        raise ApiError(422, INVALID_PARAMS, f"{name} is missing")
    try:
        number = int(value)
    except ValueError:
        raise ApiError(422, INVALID_PARAMS, f"{name} must be an integer") from None
    if not low <= number <= high:
        raise ApiError(422, INVALID_PARAMS, f"{name} must be in {low}..{high}")
    return number
