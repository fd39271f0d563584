"""Errors answered as `{"error_code", "message"}`: ApiError, status maps, exception handlers."""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from procvision_algorithm_sdk.errors import (
    ACTIVATION_CONFLICT,
    INCOMPATIBLE_PYTHON,
    INSTALL_FAILED,
    INVALID_PARAMS,
    INVALID_ZIP,
    MANIFEST_MISSING,
    UNKNOWN_ERROR,
    UNSAFE_UNINSTALL,
    WHEELS_MISSING,
    ProcVisionError,
)

__all__ = [
    "ApiError",
    "BodyTooLarge",
    "error_response",
    "install_error_handlers",
    "response_for",
    "store_error_status",
]

log = logging.getLogger("procvision_runner.service")


class ApiError(Exception):
    """An error answered as `{"error_code", "message"}` with an HTTP status."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


class BodyTooLarge(StarletteHTTPException):
    """The request body passed its size limit (raised from the limited receive channel)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The JSON error answer every refusal of the service uses."""
    return JSONResponse(
        {"error_code": code, "message": message}, status_code=status, headers=headers
    )


_BAD_PACKAGE = {INVALID_ZIP, MANIFEST_MISSING, INCOMPATIBLE_PYTHON, WHEELS_MISSING, INSTALL_FAILED}


def store_error_status(code: str) -> int:
    """HTTP status for a store refusal: 409 conflicts, 400 bad packages, 500 unknown, else 422."""
    if code in (ACTIVATION_CONFLICT, UNSAFE_UNINSTALL):
        return 409
    if code in _BAD_PACKAGE:
        return 400
    if code == UNKNOWN_ERROR:
        return 500
    return 422


def _code_for_status(status: int) -> str:
    return INVALID_PARAMS if status in (400, 404, 405, 413, 422) else UNKNOWN_ERROR


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def response_for(exc: Exception) -> JSONResponse:
    """The service's answer to an exception a request raised (the one mapping of all routes)."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    if isinstance(exc, ProcVisionError):
        code = str(exc.error_code)
        return error_response(store_error_status(code), code, exc.message or str(exc))
    if isinstance(exc, RequestValidationError):
        return error_response(422, INVALID_PARAMS, _validation_message(exc))
    if isinstance(exc, StarletteHTTPException):
        headers = dict(exc.headers) if exc.headers else None
        # The framework's only 400 is a body it could not parse (malformed multipart or form):
        # bad input, answered like malformed JSON so every documented status stays true.
        status = 422 if exc.status_code == 400 else exc.status_code
        return error_response(status, _code_for_status(status), str(exc.detail), headers)
    log.exception("unhandled error in a request", exc_info=exc)
    return error_response(500, UNKNOWN_ERROR, f"internal error: {type(exc).__name__}")


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception a request can raise to the service's error shape."""

    async def handle(_: Request, exc: Exception) -> JSONResponse:
        return response_for(exc)

    for kind in (ApiError, ProcVisionError, RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(kind, handle)
    app.add_exception_handler(Exception, handle)
