"""The form of `POST /inspect`: one pydantic model, parsed once per request, and its OpenAPI body.

Why not one FastAPI `Form()` parameter per field: FastAPI (0.16x) re-inspects every form
parameter's annotation on every request, which cost about 9 ms per /inspect call with these
26 fields on a loaded 2-core box (0.3 ms for one `model_validate` of the same form); that was
most of the lease path's overhead over the in-process call. The rules (patterns, bounds,
enums) live in this model alone; the route documents the request body from it.
"""

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import FormData, UploadFile

from .models import PID_PATTERN, SESSION_PATTERN
from .routes_frames import LEASE_PATTERN

__all__ = ["FILE_FIELDS", "InspectForm", "inspect_request_body", "parsed_form", "read_inspect_form"]

_EXONLY = "Execute-only API only (packages without supported_pids): "
Space = Literal["RGB", "BGR", "GRAY"]

FILE_FIELDS = {
    "image": "PNG, JPEG or TIFF",
    "raw": "raw row-major uint8 pixels",
    "guide_image": _EXONLY + "the guide (reference) image",
    "guide_raw": _EXONLY + "the guide image as raw uint8 pixels",
}


class InspectForm(BaseModel):
    """The non-file fields of `POST /inspect` (send exactly one of image, raw or frame)."""

    model_config = ConfigDict(extra="ignore")

    pid: Annotated[str, Field(pattern=PID_PATTERN)]
    step_index: Annotated[int, Field(ge=0, le=10_000)]
    phase: Literal["step", "pre", "execute"] = "step"
    user_params: Annotated[str | None, Field(description="JSON object")] = None
    session_id: Annotated[str | None, Field(pattern=SESSION_PATTERN)] = None
    session_context: Annotated[str | None, Field(description="JSON object")] = None
    camera_id: Annotated[str | None, Field(max_length=128)] = None
    timestamp_ms: Annotated[int | None, Field(ge=0, le=2**53)] = None
    frame: Annotated[
        str | None, Field(pattern=LEASE_PATTERN, description="a frame lease id (POST /frames)")
    ] = None
    frame_seq: Annotated[
        int | None,
        Field(ge=1, le=2**63 - 1, description="the sequence number the client committed"),
    ] = None
    width: Annotated[int | None, Field(ge=1, le=65_535)] = None
    height: Annotated[int | None, Field(ge=1, le=65_535)] = None
    channels: Annotated[int | None, Field(ge=1, le=3, description="1 or 3")] = None
    color_space: Space | None = None
    step_desc: Annotated[str | None, Field(max_length=4096, description=_EXONLY + "step text")] = (
        None
    )
    guide_info: Annotated[
        str | None,
        Field(
            description=_EXONLY + 'JSON list: [{"label": "1", "posList": [{"x", "y", '
            '"width", "height"}]}], rects inside the guide image'
        ),
    ] = None
    guide_width: Annotated[int | None, Field(ge=1, le=65_535)] = None
    guide_height: Annotated[int | None, Field(ge=1, le=65_535)] = None
    guide_channels: Annotated[int | None, Field(ge=1, le=3, description="1 or 3")] = None
    guide_color_space: Space | None = None


def read_inspect_form(
    form: FormData | Mapping[str, str | UploadFile],
) -> tuple[InspectForm, dict[str, UploadFile]]:
    """Validate a parsed form: the fields as the model, the file parts by name (422 if bad)."""
    values: dict[str, Any] = {}
    files: dict[str, UploadFile] = {}
    errors: list[dict[str, Any]] = []
    for key in form:
        value = form.get(key)
        if value == "":
            continue  # an empty form field is an absent one (as FastAPI's Form() has it)
        if key in FILE_FIELDS:
            if isinstance(value, UploadFile):
                files[key] = value
            else:
                errors.append(_error(key, "Expected UploadFile, received: str"))
        elif isinstance(value, UploadFile):
            errors.append(_error(key, "a file was sent where a value is expected"))
        else:
            values[key] = value
    try:
        fields = InspectForm.model_validate(values)
    except ValidationError as exc:
        errors += [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        fields = None
    if errors or fields is None:
        raise RequestValidationError(errors)
    return fields, files


def _error(key: str, message: str) -> dict[str, Any]:
    return {"type": "value_error", "loc": ("body", key), "msg": message, "input": None}


async def parsed_form(request: Request) -> FormData:
    """The request's form (multipart or urlencoded); 422 for anything else."""
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise RequestValidationError([_error("body", "a form body is required")])
    return await request.form()


def inspect_request_body() -> dict[str, Any]:
    """The OpenAPI requestBody of /inspect, from the model plus the file parts."""
    schema = InspectForm.model_json_schema()
    schema["title"] = "InspectForm"
    for name, description in FILE_FIELDS.items():
        schema["properties"][name] = {
            "type": "string",
            "contentMediaType": "application/octet-stream",
            "title": name.replace("_", " ").title(),
            "description": description,
        }
    content = {"schema": schema}
    return {
        "required": True,
        "content": {
            "multipart/form-data": content,
            "application/x-www-form-urlencoded": {"schema": schema},
        },
    }
