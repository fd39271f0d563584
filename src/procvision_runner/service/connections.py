"""Connection guards uvicorn lacks: a header-read deadline and a bound on open connections.

uvicorn closes idle kept-alive connections (`timeout_keep_alive`) and can answer 503 past
`limit_concurrency`, but a fresh connection that trickles its request headers is held forever
(its 503 would only be sent once the headers are complete), so 30 such clients held 30 sockets
for as long as they liked. `guarded_protocol` subclasses uvicorn's own HTTP protocol (the one
`http="auto"` picks): each connection, and each next request on a kept-alive one, must finish
its headers within `header_timeout_s` or it is answered 408 and closed; a connection beyond
`max_connections` is answered 503 with `Retry-After` and closed at once, before any byte of it
is parsed.
"""

import asyncio
import json
from typing import Any

from procvision_algorithm_sdk.errors import INVALID_PARAMS, TIMEOUT

__all__ = ["guarded_protocol"]


def _answer(status: str, code: str, message: str, extra: str = "") -> bytes:
    body = json.dumps({"error_code": code, "message": message}).encode()
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n{extra}\r\n"
    )
    return head.encode("latin-1") + body


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class with a header-read deadline and a connection bound."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    base: Any = AutoHTTPProtocol
    too_slow = _answer(
        "408 Request Timeout",
        INVALID_PARAMS,
        f"request headers not complete within {header_timeout_s:g} s",
    )
    too_many = _answer(
        "503 Service Unavailable",
        TIMEOUT,
        f"busy: {max_connections} connections are open, the most this server keeps",
        "retry-after: 1\r\n",
    )

    class GuardedHTTPProtocol(base):
        """Closes connections whose headers are late, refuses those beyond the bound."""

        _header_timer: asyncio.TimerHandle | None = None
        _armed_for: object = None

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.write(too_many)
                transport.close()
                return
            self._arm()

        def data_received(self, data: bytes) -> None:
            cycle = self.cycle
            # the first bytes of the next request on a kept-alive connection restart the clock
            idle = cycle is None or cycle.response_complete
            if idle and (self._header_timer is None or self._armed_for is not cycle):
                self._arm()
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._armed_for = self.cycle
            self._header_timer = self.loop.call_later(header_timeout_s, self._headers_late)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            # a new request cycle exists once its headers were complete: then nothing is late
            if self.cycle is self._armed_for and not self.transport.is_closing():
                self.transport.write(too_slow)
                self.transport.close()

    return GuardedHTTPProtocol
