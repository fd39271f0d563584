"""RequestCounter: counts every answered request by route template, method and status (plain ASGI).

A plain ASGI middleware rather than `@app.middleware("http")` (Starlette's BaseHTTPMiddleware),
which re-wraps every request and response in streams and task groups: measured on /inspect, the
plain form carried about 29 % more calls/s (issue 15).
"""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..metrics import ServiceMetrics

__all__ = ["RequestCounter"]


class RequestCounter:
    """Counts requests once their response has started (route template from the router)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            # The router stores the matched route in the (shared) scope it was handed.
            route = scope.get("route")
            self.metrics.count_request(getattr(route, "path", "unmatched"), scope["method"], status)
