"""The Runner as an HTTP service: package management, inspection, health and metrics.

`create_app(manager, runner, config)` builds the FastAPI app; `serve(...)` runs it on uvicorn.
Every call into the store or a worker runs in a worker thread, never on the event loop. Errors
leave as JSON `{"error_code", "message"}` with codes from `procvision_algorithm_sdk.errors`.
This package re-exports the names `procvision_runner.service` offered as one module.
"""

from .app import create_app
from .context import ServiceContext, Startup, session_exists
from .errors import ApiError, BodyTooLarge, store_error_status
from .guard import RequestGuard, check_bind, is_loopback, token_matches
from .health import readiness
from .models import (
    ERROR_RESPONSES,
    NAME_PATTERN,
    PID_PATTERN,
    SESSION_PATTERN,
    ActivateRequest,
    CallResult,
    ErrorBody,
    Health,
    Readiness,
    RollbackRequest,
    StepResult,
)
from .routes_inspect import decode_image, error_result
from .server import banner, serve
from .settings import TOKEN_ENV, ServiceConfig
from .uploads import receive_upload

__all__ = [
    "ERROR_RESPONSES",
    "NAME_PATTERN",
    "PID_PATTERN",
    "SESSION_PATTERN",
    "TOKEN_ENV",
    "ActivateRequest",
    "ApiError",
    "BodyTooLarge",
    "CallResult",
    "ErrorBody",
    "Health",
    "Readiness",
    "RequestGuard",
    "RollbackRequest",
    "ServiceConfig",
    "ServiceContext",
    "Startup",
    "StepResult",
    "banner",
    "check_bind",
    "create_app",
    "decode_image",
    "error_result",
    "is_loopback",
    "readiness",
    "receive_upload",
    "serve",
    "session_exists",
    "store_error_status",
    "token_matches",
]
