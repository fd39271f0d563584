"""Who may call and how much they may send: RequestGuard, the one token check, the bind rule."""

import hmac
import ipaddress
import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from procvision_algorithm_sdk.errors import INVALID_PARAMS, UNKNOWN_ERROR

from .errors import BodyTooLarge
from .settings import TOKEN_ENV, ServiceConfig

__all__ = ["RequestGuard", "check_bind", "is_loopback", "token_matches"]

UNAUTHORIZED_MESSAGE = "missing or wrong bearer token"


def token_matches(token: str, authorization: bytes | str) -> bool:
    """Constant-time check of an `Authorization: Bearer <token>` header value."""
    if isinstance(authorization, str):
        authorization = authorization.encode("latin-1", "replace")
    scheme, _, supplied = authorization.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        supplied = b""
    return hmac.compare_digest(supplied.strip(), token.encode("utf-8"))


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
    return _body(UNKNOWN_ERROR, UNAUTHORIZED_MESSAGE)


async def _send_json(
    send: Send, status: int, body: dict[str, str], extra: dict[str, str] | None = None
) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
