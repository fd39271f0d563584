"""The lease lane: `POST /inspect` naming a frame lease, answered past FastAPI's request machinery.

A same-host station's hot path is one small urlencoded form naming the lease it just wrote.
Through FastAPI's middleware stack, routing, dependency solving and form parser that form cost
about 0.5 ms more per call (`benchmarks/http_overheads.py`), of the few ms issue 15's lease
budget leaves over the Runner's own work. This plain ASGI
layer sits inside the guard, the request counter and the access log (so the token check, the
size limits, counting and logging are theirs, unchanged), parses the form itself, validates it
with the same `InspectForm` and runs the same inspection code as the route. Any other request
to /inspect (multipart, a form without `frame`) goes on to the app with its body replayed.
"""

import urllib.parse
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..leases import LeaseRegistry
from .context import ServiceContext
from .errors import response_for
from .routes_inspect import answer_form

__all__ = ["LeaseLane", "form_values"]

_FORM = b"application/x-www-form-urlencoded"


class LeaseLane:
    """Answers `POST /inspect` forms that name a lease; passes everything else on."""

    def __init__(
        self, app: ASGIApp, ctx: ServiceContext, leases: LeaseRegistry, route: Any
    ) -> None:
        self.app = app
        self.ctx = ctx
        self.leases = leases
        self.route = route  # what the request counter reads the route template from

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry."""
        if not _is_lease_form(scope):
            await self.app(scope, receive, send)
            return
        try:
            first = await receive()  # the guard's channel: refuses a body past the limit
        except Exception as exc:
            await response_for(exc)(scope, receive, send)
            return
        values = _lease_form(first)
        if values is None:
            await self.app(scope, _replay(first, receive), send)
            return
        scope["route"] = self.route
        request = Request(scope, receive)
        try:
            client = request.headers.get("x-procvision-client")
            response = await answer_form(self.ctx, self.leases, request, values, client)
        except Exception as exc:  # errors are answers here, as the framework's handlers make them
            response = response_for(exc)
        await response(scope, receive, send)


def _is_lease_form(scope: Scope) -> bool:
    if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/inspect":
        return False
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == _FORM
    return False


def _lease_form(message: Message) -> dict[str, str] | None:
    """The fields of a one-message form that names a lease (a repeated key: the last wins)."""
    if message["type"] != "http.request" or message.get("more_body", False):
        return None
    body = bytes(message.get("body", b""))
    if b"frame=" not in body:
        return None
    values = form_values(body)
    return values if values and values.get("frame") else None


def form_values(body: bytes) -> dict[str, str] | None:
    """The fields of a urlencoded form (a repeated key: the last wins); None if not ASCII."""
    if not body.isascii():
        return None
    return dict(urllib.parse.parse_qsl(body.decode("ascii"), keep_blank_values=True))


def _replay(first: Message, receive: Receive) -> Receive:
    """A receive channel that hands out the already-read first message again."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return first
        return await receive()

    return replayed
