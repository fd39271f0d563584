"""AccessLog: one record per HTTP request in the server's log (plain ASGI, like RequestCounter).

The record (logger `procvision_runner.access`) carries method, path, status, duration_ms and
client as fields of the one JSON log; uvicorn's own text access log is off. The query string
is left out: it is not needed to follow a request and keeps the line bounded.
"""

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["AccessLog", "log_request"]

log = logging.getLogger("procvision_runner.access")


class AccessLog:
    """Logs each request once its response has been sent (or has failed)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry."""
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        status = 500  # what the server answers when the app raises before it starts a response
        started = time.perf_counter()

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            ms = round((time.perf_counter() - started) * 1000.0, 3)
            client = scope.get("client")
            log_request(scope["method"], scope["path"], status, ms, client[0] if client else None)


def log_request(method: str, path: str, status: int, ms: float, client: str | None) -> None:
    """The one access record of a request (HTTP or the local socket)."""
    log.info(
        "%s %s %s %d %.1f ms",
        client,
        method,
        path,
        status,
        ms,
        extra={
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": ms,
            "client": client,
        },
    )
