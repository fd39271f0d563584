"""Package uploads: stream a multipart `file` part or a raw zip body into the store's tmp dir."""

import os
import tempfile
from pathlib import Path
from typing import Any

import anyio
from fastapi import Request
from starlette.exceptions import HTTPException as StarletteHTTPException

from procvision_algorithm_sdk.errors import INVALID_PARAMS

from .errors import ApiError, BodyTooLarge

try:
    from python_multipart.multipart import MultipartParser, parse_options_header
except ImportError:  # python-multipart < 0.0.13 named its module `multipart`
    from multipart.multipart import (  # type: ignore[no-redef,import-not-found,unused-ignore]
        MultipartParser,
        parse_options_header,
    )

__all__ = ["UPLOAD_OPENAPI", "receive_upload"]


async def receive_upload(request: Request, directory: Path, limit: int) -> Path:
    """Stream a package upload (multipart `file` part, or a raw zip body) into `directory`."""
    content_type = request.headers.get("content-type", "")
    ctype, params = parse_options_header(content_type)
    directory.mkdir(parents=True, exist_ok=True)
    # The client's filename is never used: the store sees only this server-chosen name.
    # The pid in the name tells a store reconcile whose upload this is.
    fd, name = tempfile.mkstemp(prefix=f"upload-{os.getpid()}-", suffix=".zip", dir=directory)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            written = 0
            if ctype == b"multipart/form-data":
                boundary = params.get(b"boundary")
                if not boundary:
                    raise ApiError(422, INVALID_PARAMS, "multipart body without a boundary")
                written = await _stream_multipart(request, boundary, out, limit)
            elif ctype in (b"application/zip", b"application/octet-stream"):
                async for chunk in request.stream():
                    written += len(chunk)
                    if written > limit:
                        raise BodyTooLarge(limit)
                    if chunk:
                        await anyio.to_thread.run_sync(out.write, chunk)
            else:
                raise ApiError(
                    422,
                    INVALID_PARAMS,
                    "send the zip as multipart/form-data (part 'file') or application/zip",
                )
            if written == 0:
                raise ApiError(422, INVALID_PARAMS, "the upload is empty")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


async def _stream_multipart(request: Request, boundary: bytes, out: Any, limit: int) -> int:
    """Write the `file` part of a multipart body to `out`; return its size."""
    state: dict[str, Any] = {
        "header_field": b"",
        "header_value": b"",
        "headers": {},
        "is_file": False,
        "seen_file": False,
        "pending": [],
        "written": 0,
    }

    def on_part_begin() -> None:
        state["headers"] = {}
        state["is_file"] = False

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["header_field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["header_value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["header_field"].lower()] = state["header_value"]
        state["header_field"] = b""
        state["header_value"] = b""

    def on_headers_finished() -> None:
        _, options = parse_options_header(state["headers"].get(b"content-disposition", b""))
        if options.get(b"name") == b"file":
            if state["seen_file"]:
                raise ApiError(422, INVALID_PARAMS, "more than one 'file' part")
            state["is_file"] = True
            state["seen_file"] = True

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["is_file"]:
            state["written"] += end - start
            if state["written"] > limit:
                raise BodyTooLarge(limit)
            state["pending"].append(data[start:end])

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
        },
    )

    def flush(chunks: list[bytes]) -> None:
        for chunk in chunks:
            out.write(chunk)

    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if state["pending"]:
                chunks, state["pending"] = state["pending"], []
                await anyio.to_thread.run_sync(flush, chunks)
        parser.finalize()
    except (ApiError, StarletteHTTPException):
        raise
    except Exception as exc:  # the multipart parser's own errors
        raise ApiError(422, INVALID_PARAMS, f"malformed multipart body: {exc}") from None
    if not state["seen_file"]:
        raise ApiError(422, INVALID_PARAMS, "the multipart body has no 'file' part")
    return int(state["written"])


UPLOAD_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
