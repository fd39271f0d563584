"""What the local socket answers: `POST /inspect` forms naming a frame lease, as over HTTP.

The socket (`service/local_socket.py`) is for a same-host station's hot path only: the same
token rule, form model, lease checks, Runner call, page feed, request counter and access log as
`POST /inspect` with `frame` over HTTP (`routes_inspect.answer_lease_now`); the answer is the
same JSON. Anything else (images, management) is refused with a pointer to the HTTP address.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from fastapi.responses import JSONResponse

from procvision_algorithm_sdk.errors import INVALID_PARAMS, UNKNOWN_ERROR

from ..leases import LeaseRegistry
from .access_log import log_request
from .context import ServiceContext
from .errors import ApiError, response_for
from .guard import UNAUTHORIZED_MESSAGE, token_matches
from .lease_lane import form_values
from .local_socket import LocalReply, LocalRequest, LocalSocketServer, socket_path_problem
from .routes_inspect import answer_lease_now

__all__ = ["local_handler", "local_socket_path", "start_local_socket"]

log = logging.getLogger("procvision_runner.service")

_FORM = "application/x-www-form-urlencoded"


def local_handler(
    ctx: ServiceContext, leases: LeaseRegistry, is_protected: Callable[[str, str], bool]
) -> Callable[[LocalRequest], LocalReply]:
    """The local socket's request handler over this service's Runner and leases."""
    token = ctx.cfg.token or None

    def handle(request: LocalRequest) -> LocalReply:
        started = time.perf_counter()
        route = "unmatched"
        try:
            supplied = request.headers.get("authorization", "")
            if (
                token
                and is_protected(request.method, request.path)
                and not token_matches(token, supplied)
            ):
                raise ApiError(
                    401, UNKNOWN_ERROR, UNAUTHORIZED_MESSAGE, {"WWW-Authenticate": "Bearer"}
                )
            values = _lease_form(request)
            route = "/inspect"
            client = request.headers.get("x-procvision-client")
            answer = JSONResponse(answer_lease_now(ctx, leases, values, client))
        except Exception as exc:  # every failure is an answer, as the HTTP handlers make them
            answer = response_for(exc)
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in answer.raw_headers
            if k != b"content-length"
        ]
        reply = LocalReply(answer.status_code, bytes(answer.body), headers)
        ctx.metrics.count_request(route, request.method, reply.status)
        ms = round((time.perf_counter() - started) * 1000.0, 3)
        who = f"pid {request.peer_pid}" if request.peer_pid else "local"
        log_request(request.method, request.path, reply.status, ms, who)
        return reply

    return handle


def _lease_form(request: LocalRequest) -> dict[str, str]:
    if request.path != "/inspect":
        raise ApiError(
            404,
            INVALID_PARAMS,
            f"the local socket answers POST /inspect with a frame lease only; {request.path} "
            "is served over HTTP",
        )
    if request.method != "POST":
        raise ApiError(405, INVALID_PARAMS, "the local socket's /inspect takes POST")
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != _FORM:
        raise ApiError(422, INVALID_PARAMS, f"the local socket takes {_FORM} forms")
    values = form_values(request.body)
    if values is None:
        raise ApiError(422, INVALID_PARAMS, "a urlencoded form is ASCII")
    return values


def local_socket_path(setting: str, default: Path) -> Path | None:
    """The socket's path for the `local_socket` setting ("auto": `default`, "off", a path)."""
    if setting == "off":
        return None
    if setting == "auto":
        return default
    return Path(setting)


def start_local_socket(
    ctx: ServiceContext,
    leases: LeaseRegistry,
    is_protected: Callable[[str, str], bool],
) -> LocalSocketServer | None:
    """Start the local socket the settings ask for; None when off or (for "auto") not possible."""
    path = local_socket_path(ctx.cfg.local_socket, ctx.manager.store.local_socket)
    if path is None:
        return None
    server = LocalSocketServer(
        path,
        local_handler(ctx, leases, is_protected),
        max_body=ctx.cfg.max_request_bytes,
        header_timeout_s=ctx.cfg.header_timeout_s,
    )
    problem = socket_path_problem(path)
    try:
        if problem:
            raise OSError(problem)
        server.start()
    except OSError as exc:
        if ctx.cfg.local_socket != "auto":
            raise
        log.warning("the local socket is off: %s", exc, extra={"path": str(path)})
        return None
    return server
