"""The Runner as an HTTP service: package management, inspection, health and metrics.

`create_app(manager, runner, config)` builds the FastAPI app; `serve(...)` runs it on uvicorn.
Every call into the store or a worker runs in a worker thread, never on the event loop. Errors
leave as JSON `{"error_code", "message"}` with codes from `procvision_algorithm_sdk.errors`.
"""

import contextlib
import hmac
import ipaddress
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import numpy as np
from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from procvision_algorithm_sdk.contract import find_unjsonable
from procvision_algorithm_sdk.errors import (
    ACTIVATION_CONFLICT,
    IMAGE_LOAD_FAILED,
    INCOMPATIBLE_PYTHON,
    INSTALL_FAILED,
    INVALID_PARAMS,
    INVALID_PID,
    INVALID_ZIP,
    MANIFEST_MISSING,
    UNKNOWN_ERROR,
    UNSAFE_UNINSTALL,
    WHEELS_MISSING,
    ImageLoadError,
    ProcVisionError,
)

from .config import read_config_file
from .metrics import ServiceMetrics

try:
    from python_multipart.multipart import MultipartParser, parse_options_header
except ImportError:  # python-multipart < 0.0.13 named its module `multipart`
    from multipart.multipart import (  # type: ignore[no-redef,import-not-found,unused-ignore]
        MultipartParser,
        parse_options_header,
    )

log = logging.getLogger("procvision_runner.service")

TOKEN_ENV = "PROCVISION_TOKEN"
# Same rule as the store's names (zipcheck.SAFE_NAME): one boring path component.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
PID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
# Session ids come from station software (board serials, trace ids): printable, bounded.
SESSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@#/+=-]{0,127}$"
_UPLOAD_CHUNK = 1024 * 1024
_MAX_FORM_FIELD = 64 * 1024


@dataclass
class ServiceConfig:
    """HTTP-side settings (the `service` section of the runner config file)."""

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None  # when set (here or in PROCVISION_TOKEN) it is always enforced
    require_token: bool = False  # refuse to start without a token even on loopback
    max_upload_bytes: int = 2 * 1024**3  # package zips
    max_inspect_bytes: int = 256 * 1024**2  # one inspect request (image + fields)
    max_request_bytes: int = 1024**2  # every other request
    max_image_pixels: int = 64_000_000  # decoded PNG/JPEG size guard (decompression bombs)
    log_level: str = "info"
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "ServiceConfig":
        """Build from a mapping; unknown keys are kept in `extra` and otherwise ignored."""
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        cfg = cls(**kwargs)
        cfg.extra = {k: v for k, v in data.items() if k not in known}
        for name in ("port", "max_upload_bytes", "max_inspect_bytes", "max_request_bytes"):
            value = getattr(cfg, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"service.{name} must be a positive integer")
        if cfg.token is not None and not isinstance(cfg.token, str):
            raise ValueError("service.token must be a string")
        return cfg

    @classmethod
    def load(
        cls, path: str | Path | None = None, environ: Mapping[str, str] | None = None
    ) -> "ServiceConfig":
        """Read the `service` section of a JSON/TOML config file, then PROCVISION_TOKEN."""
        data: dict[str, Any] = {}
        if path is not None:
            raw = read_config_file(path)
            section = raw.get("service", {})
            if not isinstance(section, dict):
                raise ValueError("the config's 'service' section must be a table/object")
            data = dict(section)
        cfg = cls.from_mapping(data)
        env = os.environ if environ is None else environ
        if not cfg.token and env.get(TOKEN_ENV):
            cfg.token = env[TOKEN_ENV]
        if cfg.token == "":
            cfg.token = None
        return cfg


def is_loopback(host: str) -> bool:
    """Return whether binding `host` keeps the service on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, config: ServiceConfig) -> str | None:
    """Return why the service must not start on `host` with `config`, or None when it may."""
    if config.token:
        return None
    if not is_loopback(host):
        return (
            f"refusing to bind {host}: a non-loopback address needs a token "
            f"(config service.token or {TOKEN_ENV})"
        )
    if config.require_token:
        return f"service.require_token is set but no token is configured ({TOKEN_ENV})"
    return None


# ---------------------------------------------------------------------------------------------
# Errors


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


class ErrorBody(BaseModel):
    """Every error response."""

    error_code: str = Field(description="code from the ProcVision error table, as a string")
    message: str


def _error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
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


# ---------------------------------------------------------------------------------------------
# Request models


class ActivateRequest(BaseModel):
    """Bind pids to an installed package version (also the body of switch)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(pattern=NAME_PATTERN)
    pids: list[Annotated[str, Field(pattern=PID_PATTERN)]] = Field(min_length=1, max_length=1000)


class RollbackRequest(BaseModel):
    """Re-activate the previous version for one pid."""

    model_config = ConfigDict(extra="forbid")
    pid: str = Field(pattern=PID_PATTERN)


class Health(BaseModel):
    """Liveness: the process answers."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Readiness: every active package version warm, none FAILED."""

    model_config = ConfigDict(extra="allow")
    ready: bool
    started: bool
    problems: list[str]
    active: dict[str, Any]
    packages: list[dict[str, Any]]


class CallResult(BaseModel):
    """One Runner result (pre_execute or execute); extra fields are the algorithm's own."""

    model_config = ConfigDict(extra="allow")
    status: Literal["OK", "ERROR"]
    message: str | None = None
    error_code: str | None = None
    data: dict[str, Any] | None = None
    debug: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    package: dict[str, Any] | None = None


class StepResult(BaseModel):
    """Result of phase=step: pre_execute, then execute unless pre_execute failed."""

    model_config = ConfigDict(extra="allow")
    pre_execute: CallResult
    execute: CallResult | None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "bad package (2001..2005)"},
    401: {"model": ErrorBody, "description": "missing or wrong bearer token"},
    404: {"model": ErrorBody, "description": "unknown package, version or session"},
    409: {"model": ErrorBody, "description": "activation conflict (2006) or unsafe uninstall"},
    413: {"model": ErrorBody, "description": "request body too large"},
    422: {"model": ErrorBody, "description": "invalid input (1006)"},
}


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: ERROR_RESPONSES[s] for s in statuses}


# ---------------------------------------------------------------------------------------------
# Middleware: body limits and early token refusal


class RequestGuard:
    """Refuses oversized bodies (413) and unauthenticated protected calls (401) before parsing."""

    def __init__(
        self,
        app: ASGIApp,
        limit_for: Callable[[str], int],
        is_protected: Callable[[str, str], bool],
        token: str | None,
    ) -> None:
        self.app = app
        self.limit_for = limit_for
        self.is_protected = is_protected
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope.get("path", ""), scope.get("method", "GET")
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        if (
            self.token
            and self.is_protected(method, path)
            and not token_matches(self.token, headers.get("authorization", b""))
        ):
            await _send_json(send, 401, _unauthorized_body(), {"www-authenticate": "Bearer"})
            return
        limit = self.limit_for(path)
        declared = headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = -1
            if size < 0:
                await _send_json(send, 400, _body(INVALID_PARAMS, "bad Content-Length"))
                return
            if size > limit:
                await _send_json(
                    send, 413, _body(INVALID_PARAMS, f"request body larger than {limit} bytes")
                )
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)


def _body(code: str, message: str) -> dict[str, str]:
    return {"error_code": code, "message": message}


def _unauthorized_body() -> dict[str, str]:
    return _body(UNKNOWN_ERROR, "missing or wrong bearer token")


async def _send_json(
    send: Send, status: int, body: dict[str, str], extra: dict[str, str] | None = None
) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def token_matches(token: str, authorization: bytes | str) -> bool:
    """Constant-time check of an `Authorization: Bearer <token>` header value."""
    if isinstance(authorization, str):
        authorization = authorization.encode("latin-1", "replace")
    scheme, _, supplied = authorization.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        supplied = b""
    return hmac.compare_digest(supplied.strip(), token.encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# Images


def decode_image(data: bytes, max_pixels: int) -> tuple[np.ndarray | None, str]:
    """Decode PNG/JPEG bytes to an H x W x 3 RGB uint8 array, or (None, why) when it cannot."""
    from procvision_algorithm_sdk.imagefile import decode_image as decode

    try:
        return decode(data, formats=("PNG", "JPEG"), max_pixels=max_pixels), ""
    except ImageLoadError as exc:
        return None, str(exc)


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


def _parse_json_field(name: str, text: str | None) -> dict[str, Any] | None:
    if text is None or text == "":
        return None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ApiError(422, INVALID_PARAMS, f"{name} is nested too deeply") from None
    except ValueError as exc:
        raise ApiError(422, INVALID_PARAMS, f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(422, INVALID_PARAMS, f"{name} must be a JSON object")
    # the Runner sends these on as JSON: what it could not encode is refused here, not there
    problems = find_unjsonable(value, name)
    if problems:
        raise ApiError(422, INVALID_PARAMS, f"{name}: {problems[0].message}")
    return value


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON number")


# ---------------------------------------------------------------------------------------------
# Upload streaming


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


_UPLOAD_OPENAPI: dict[str, Any] = {
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


# ---------------------------------------------------------------------------------------------
# Readiness


class _Startup:
    """Tracks the background warm-up of every active package."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: str | None = None
        self.thread: threading.Thread | None = None


def readiness(manager: Any, runner: Any, startup: _Startup) -> dict[str, Any]:
    """Readiness details: ready only when every active version is loaded, READY and routed."""
    problems: list[str] = []
    started = startup.done.is_set()
    if not started:
        problems.append("starting: active packages are being loaded and warmed")
    if startup.error:
        problems.append(f"start-up failed: {startup.error}")
    try:
        active = {pid: dict(m) for pid, m in manager.active().items()}
    except Exception as exc:
        active = {}
        problems.append(f"cannot read the active mappings: {exc}")
    packages = [dict(p) for p in runner.packages()]
    routes = {pid: (key[0], key[1]) for pid, key in runner.routes().items()}
    by_key = {(str(p.get("name")), str(p.get("version"))): p for p in packages}
    for pid, mapping in sorted(active.items()):
        key = (str(mapping.get("name")), str(mapping.get("version")))
        pkg = by_key.get(key)
        if pkg is None:
            problems.append(f"{pid}: {key[0]} {key[1]} is not loaded")
        elif pkg.get("state") != "READY":
            problems.append(f"{pid}: {key[0]} {key[1]} is {pkg.get('state')}")
        elif routes.get(pid) != key:
            problems.append(f"{pid}: not routed to {key[0]} {key[1]}")
    for pkg in packages:
        if pkg.get("state") == "FAILED":
            problems.append(f"{pkg.get('name')} {pkg.get('version')} is FAILED")
    summary = [
        {k: v for k, v in p.items() if k in ("name", "version", "state", "workers")}
        for p in packages
    ]
    return {
        "ready": not problems,
        "started": started,
        "problems": problems,
        "active": active,
        "packages": summary,
    }


def session_exists(runner: Any, session_id: str) -> bool:
    """Whether the Runner keeps state for this session (expired sessions do not count)."""
    probe = getattr(runner, "has_session", None)
    if callable(probe):
        return bool(probe(session_id))
    # The Runner's API has no existence query yet; its session table answers the same question.
    sessions = getattr(runner, "_sessions", None)
    return sessions is not None and sessions.get(session_id) is not None


# ---------------------------------------------------------------------------------------------
# The app


def create_app(
    manager: Any,
    runner: Any,
    config: ServiceConfig | None = None,
    *,
    start_packages: bool = True,
) -> FastAPI:
    """Build the HTTP app over a PackageManager and its Runner (start_packages: warm on start)."""
    cfg = config or ServiceConfig()
    metrics = ServiceMetrics(runner)
    runner.add_call_observer(metrics.observe)
    startup = _Startup()
    manage_lock = threading.Lock()  # one store mutation at a time from this process
    token = cfg.token or None

    def limit_for(path: str) -> int:
        if path in ("/algorithms/install", "/algorithms/validate"):
            return cfg.max_upload_bytes
        if path == "/inspect":
            return cfg.max_inspect_bytes
        return cfg.max_request_bytes

    def is_protected(method: str, path: str) -> bool:
        if method in ("GET", "HEAD", "OPTIONS"):
            return path.startswith("/sessions/")
        return True

    def start_worker() -> None:
        try:
            if start_packages:
                with manage_lock:  # management calls wait until the start-up warm-up is done
                    manager.start()
        except Exception as exc:
            log.exception("starting the active packages failed")
            startup.error = f"{type(exc).__name__}: {exc}"
        finally:
            startup.done.set()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        startup.thread = threading.Thread(target=start_worker, name="procvision-start", daemon=True)
        startup.thread.start()
        yield
        # Do not hang shutdown on a slow warm-up; the Runner's close() stops what it started.
        await anyio.to_thread.run_sync(startup.thread.join, 5.0)

    app = FastAPI(
        title="ProcVision Runner",
        version=_version(),
        description=(
            "Package management, inspection, health and metrics of a resident ProcVision "
            "Runner. Errors are `{error_code, message}` with codes from the ProcVision table."
        ),
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    app.state.startup = startup
    app.add_middleware(
        RequestGuard,
        limit_for=limit_for,
        is_protected=is_protected,
        token=token,
    )

    bearer = HTTPBearer(auto_error=False, description="the service token")

    def authorize(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if token is None:
            return
        supplied = credentials.credentials if credentials else ""
        if not hmac.compare_digest(supplied.encode("utf-8"), token.encode("utf-8")):
            raise ApiError(
                401, UNKNOWN_ERROR, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
            )

    auth = [Depends(authorize)]

    # -- error mapping --------------------------------------------------------------------

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(ProcVisionError)
    async def _procvision_error(_: Request, exc: ProcVisionError) -> JSONResponse:
        code = str(exc.error_code)
        return _error_response(store_error_status(code), code, exc.message or str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(422, INVALID_PARAMS, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        # The framework's only 400 is a body it could not parse (malformed multipart or form):
        # bad input, answered like malformed JSON so every documented status stays true.
        status = 422 if exc.status_code == 400 else exc.status_code
        return _error_response(status, _code_for_status(status), str(exc.detail), headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in a request", exc_info=exc)
        return _error_response(500, UNKNOWN_ERROR, f"internal error: {type(exc).__name__}")

    @app.middleware("http")
    async def _count_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        metrics.count_request(template, request.method, response.status_code)
        return response

    async def managed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def locked() -> Any:
            with manage_lock:
                return fn(*args, **kwargs)

        return await run_in_threadpool(locked)

    def upload_dir() -> Path:
        store = getattr(manager, "store", None)
        for attr in ("tmp_dir", "tmp", "tmp_path"):
            value = getattr(store, attr, None)
            if value is not None:
                return Path(value)
        root = getattr(store, "root", None)
        if root is None:
            raise ApiError(500, UNKNOWN_ERROR, "the store has no temporary directory")
        return Path(root) / "tmp"

    async def known_version(name: str, version: str) -> None:
        entries = await run_in_threadpool(manager.list, None, name)
        if not any(str(e.get("version")) == version for e in entries):
            raise ApiError(404, INVALID_PARAMS, f"{name} {version} is not installed")

    async def known_session(session_id: str) -> None:
        if not await run_in_threadpool(session_exists, runner, session_id):
            raise ApiError(404, INVALID_PARAMS, f"no session {session_id!r}")

    # -- management -----------------------------------------------------------------------

    @app.post(
        "/algorithms/install",
        dependencies=auth,
        openapi_extra=_UPLOAD_OPENAPI,
        responses=_responses(400, 401, 409, 413, 422),
        summary="Install an offline package zip",
    )
    async def install(
        request: Request,
        replace: Annotated[bool, Query(description="replace an inactive same version")] = False,
    ) -> dict[str, Any]:
        """Install an uploaded zip; returns the registry entry."""
        path = await receive_upload(request, upload_dir(), cfg.max_upload_bytes)
        try:
            entry = await managed(manager.install, path, replace=replace)
        finally:
            path.unlink(missing_ok=True)
        return dict(entry)

    @app.post(
        "/algorithms/validate",
        dependencies=auth,
        openapi_extra=_UPLOAD_OPENAPI,
        responses=_responses(401, 413, 422),
        summary="Check an offline package zip without installing it",
    )
    async def validate(request: Request) -> dict[str, Any]:
        """Validate an uploaded zip; returns the check report (PASS or FAIL)."""
        path = await receive_upload(request, upload_dir(), cfg.max_upload_bytes)
        try:
            report = await run_in_threadpool(manager.validate_zip, path)
        finally:
            path.unlink(missing_ok=True)
        return dict(report)

    @app.post(
        "/algorithms/activate",
        dependencies=auth,
        responses=_responses(400, 401, 404, 409, 413, 422),
        summary="Bind pids to an installed version (workers warm first)",
    )
    async def activate(body: ActivateRequest) -> dict[str, Any]:
        """Activate a version for pids."""
        await known_version(body.name, body.version)
        return dict(await managed(manager.activate, body.name, body.version, list(body.pids)))

    @app.post(
        "/algorithms/switch",
        dependencies=auth,
        responses=_responses(400, 401, 404, 409, 413, 422),
        summary="Move pids to another version without failing a call",
    )
    async def switch(body: ActivateRequest) -> dict[str, Any]:
        """Switch pids to a version."""
        await known_version(body.name, body.version)
        return dict(await managed(manager.switch, body.name, body.version, list(body.pids)))

    @app.post(
        "/algorithms/rollback",
        dependencies=auth,
        responses=_responses(400, 401, 404, 409, 413, 422),
        summary="Re-activate the previous version for a pid",
    )
    async def rollback(body: RollbackRequest) -> dict[str, Any]:
        """Roll a pid back."""
        try:
            return dict(await managed(manager.rollback, body.pid))
        except ProcVisionError as exc:
            if str(exc.error_code) == INVALID_PID:  # the pid has no mapping: nothing to roll
                raise ApiError(404, INVALID_PID, exc.message or str(exc)) from None
            raise

    @app.delete(
        "/algorithms/{name}/{version}",
        dependencies=auth,
        responses=_responses(401, 404, 409, 413, 422),
        summary="Uninstall a version (refused while active unless force)",
    )
    async def uninstall(
        name: Annotated[str, PathParam(pattern=NAME_PATTERN)],
        version: Annotated[str, PathParam(pattern=NAME_PATTERN)],
        force: bool = False,
    ) -> dict[str, Any]:
        """Uninstall a version."""
        await known_version(name, version)
        return dict(await managed(manager.uninstall, name, version, force=force))

    @app.get(
        "/algorithms",
        responses=_responses(413, 422),
        summary="Installed packages",
    )
    async def list_algorithms(
        state: Annotated[str | None, Query(pattern=r"^[a-z]{1,20}$")] = None,
        name: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    ) -> list[dict[str, Any]]:
        """Registry entries, optionally filtered by state and name."""
        return [dict(e) for e in await run_in_threadpool(manager.list, state, name)]

    @app.get("/algorithms/active", responses=_responses(413), summary="pid -> active version")
    async def active() -> dict[str, dict[str, Any]]:
        """The active mappings."""
        return {pid: dict(m) for pid, m in (await run_in_threadpool(manager.active)).items()}

    # -- inspection -----------------------------------------------------------------------

    @app.post(
        "/inspect",
        dependencies=auth,
        response_model=StepResult | CallResult,
        responses=_responses(401, 413, 422),
        summary="Run a step (or one phase) on an uploaded image",
    )
    async def inspect(
        pid: Annotated[str, Form(pattern=PID_PATTERN)],
        step_index: Annotated[int, Form(ge=1, le=10_000)],
        phase: Annotated[Literal["step", "pre", "execute"], Form()] = "step",
        user_params: Annotated[str | None, Form(description="JSON object")] = None,
        session_id: Annotated[str | None, Form(pattern=SESSION_PATTERN)] = None,
        session_context: Annotated[str | None, Form(description="JSON object")] = None,
        camera_id: Annotated[str | None, Form(max_length=128)] = None,
        timestamp_ms: Annotated[int | None, Form(ge=0, le=2**53)] = None,
        image: Annotated[UploadFile | None, File(description="PNG or JPEG")] = None,
        raw: Annotated[UploadFile | None, File(description="raw row-major uint8 pixels")] = None,
        width: Annotated[int | None, Form(ge=1, le=65_535)] = None,
        height: Annotated[int | None, Form(ge=1, le=65_535)] = None,
        channels: Annotated[int | None, Form(ge=1, le=3, description="1 or 3")] = None,
        color_space: Annotated[Literal["RGB", "BGR", "GRAY"] | None, Form()] = None,
    ) -> JSONResponse:
        """Inspect one frame; the answer is exactly the Runner API's dict."""
        params = _parse_json_field("user_params", user_params)
        context = _parse_json_field("session_context", session_context)
        if (image is None) == (raw is None):
            raise ApiError(422, INVALID_PARAMS, "send exactly one of the parts 'image' or 'raw'")
        if raw is not None:
            frame, space = await _raw_frame(raw, width, height, channels, color_space)
        else:
            assert image is not None
            if width is not None or height is not None or channels is not None:
                raise ApiError(422, INVALID_PARAMS, "width/height/channels go with 'raw' only")
            data = await image.read()
            decoded, why = await run_in_threadpool(decode_image, data, cfg.max_image_pixels)
            if decoded is None:
                routed = runner.routes().get(pid)
                package = {"name": routed[0], "version": routed[1]} if routed else None
                metrics.count_rejected(pid, phase, IMAGE_LOAD_FAILED, package)
                failed = error_result(IMAGE_LOAD_FAILED, why, package)
                out = {"pre_execute": failed, "execute": None} if phase == "step" else failed
                return JSONResponse(out)
            frame, space = decoded, "RGB"
        calls = {"step": runner.run_step, "pre": runner.pre_execute, "execute": runner.execute}
        call = calls[phase]

        def run() -> dict[str, Any]:
            return call(
                pid,
                step_index,
                frame,
                user_params=params,
                session_id=session_id,
                session_context=context,
                color_space=space,
                camera_id=camera_id,
                timestamp_ms=timestamp_ms,
            )

        result = await run_in_threadpool(run)
        return JSONResponse(result)

    async def _raw_frame(
        raw: UploadFile,
        width: int | None,
        height: int | None,
        channels: int | None,
        color_space: str | None,
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
        if expected > cfg.max_inspect_bytes:
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

    # -- sessions -------------------------------------------------------------------------

    SessionId = Annotated[str, PathParam(pattern=SESSION_PATTERN)]

    @app.post(
        "/sessions/{session_id}/reset",
        dependencies=auth,
        responses=_responses(401, 404, 413, 422),
        summary="Restart a detection run (the algorithm's reset hook)",
    )
    async def reset_session(session_id: SessionId) -> dict[str, Any]:
        """Reset a session."""
        await known_session(session_id)
        await run_in_threadpool(runner.reset, session_id)
        return {"session_id": session_id, "status": "reset"}

    @app.delete(
        "/sessions/{session_id}",
        dependencies=auth,
        responses=_responses(401, 404, 413, 422),
        summary="Close a session and drop its state",
    )
    async def close_session(session_id: SessionId) -> dict[str, Any]:
        """Close a session."""
        await known_session(session_id)
        await run_in_threadpool(runner.close_session, session_id)
        return {"session_id": session_id, "status": "closed"}

    @app.get(
        "/sessions/{session_id}/logs",
        dependencies=auth,
        responses=_responses(401, 404, 413, 422),
        summary="The session's recent worker log records",
    )
    async def session_logs(session_id: SessionId) -> list[dict[str, Any]]:
        """Log records of a session."""
        await known_session(session_id)
        return list(await run_in_threadpool(runner.session_logs, session_id))

    # -- health and metrics ---------------------------------------------------------------

    @app.get("/healthz", response_model=Health, summary="The process answers")
    async def healthz() -> dict[str, str]:
        """Liveness."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "not ready (details inside)"}},
        summary="Every active version warm, none FAILED",
    )
    async def readyz() -> JSONResponse:
        """Readiness with details."""
        details = await run_in_threadpool(readiness, manager, runner, startup)
        return JSONResponse(details, status_code=200 if details["ready"] else 503)

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
        summary="Prometheus metrics",
    )
    async def prometheus() -> Response:
        """Prometheus text exposition."""
        body = await run_in_threadpool(metrics.render)
        return Response(body, media_type=metrics.content_type)

    return app


def _version() -> str:
    try:
        from procvision_algorithm_sdk._version import __version__

        return str(__version__)
    except Exception:
        return "0"


def serve(
    manager: Any,
    runner: Any,
    config: ServiceConfig,
    host: str | None = None,
    port: int | None = None,
) -> int:
    """Run the service on uvicorn until SIGINT/SIGTERM; returns a process exit code."""
    import uvicorn

    bind_host = host or config.host
    bind_port = config.port if port is None else port
    refusal = check_bind(bind_host, config)
    if refusal:
        log.error(refusal)
        print(f"error {INVALID_PARAMS}: {refusal}", flush=True, file=sys.stderr)
        return 1
    app = create_app(manager, runner, config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=bind_host,
            port=bind_port,
            log_level=config.log_level,
            lifespan="on",
            timeout_graceful_shutdown=10,
        )
    )
    started = time.monotonic()
    # uvicorn re-raises the stop signal once it has shut down; with the default handlers that
    # would kill the process before the caller closes the Runner (worker teardown, slot
    # unlinking). These handlers only note the signal, so a stop is an orderly return.
    stops: list[int] = []
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, _frame: stops.append(signum))
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("service stopped after %.1f s", time.monotonic() - started)
    return 0 if server.started else 1


def serve_from_args(args: Any) -> int:
    """`procvision-runner serve`: open the store, start a Runner, serve until SIGINT/SIGTERM."""
    from . import cli
    from .runner import Runner

    config = ServiceConfig.load(getattr(args, "config", None))
    host = args.host or config.host
    port = config.port if args.port is None else args.port
    # Refuse before any worker starts: an unsafe bind must not even warm packages.
    refusal = check_bind(host, config)
    if refusal:
        print(f"error {INVALID_PARAMS}: {refusal}", file=sys.stderr, flush=True)
        return 1
    runner_cfg, _store_cfg = cli.load_config(getattr(args, "config", None))
    with Runner(runner_cfg) as runner:
        manager = cli._manager(args, runner)
        return serve(manager, runner, config, host, port)
