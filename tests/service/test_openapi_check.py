"""The suite's response check (helpers/openapi_check.py) catches what it is there to catch.

A small real app, served by uvicorn on a loopback port, answers what its document says and, on
other routes, what it does not; the checker must pass the first and name path, status and the
schema error of each of the others. Both the in-process wrap (any client) and the httpx hook
(a server in another process) are exercised.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response, StreamingResponse
from helpers.inprocess_server import InProcessServer
from helpers.openapi_check import CHECKER, install_httpx_hook
from pydantic import BaseModel

from procvision_runner.service.openapi30 import to_openapi_30


class Verdict(BaseModel):
    status: str
    count: int


class ErrorBody(BaseModel):
    error_code: str
    message: str


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/good", response_model=Verdict, responses={404: {"model": ErrorBody}})
    async def good() -> dict[str, Any]:
        return {"status": "OK", "count": 1}

    @app.get("/wrong-body", response_model=None, responses={200: {"model": Verdict}})
    async def wrong_body() -> JSONResponse:
        return JSONResponse({"status": "OK", "count": "one"})

    @app.get("/wrong-status", response_model=Verdict)
    async def wrong_status() -> JSONResponse:
        return JSONResponse({"error_code": "9999", "message": "x"}, status_code=418)

    @app.get("/wrong-type", response_model=Verdict)
    async def wrong_type() -> Response:
        return Response(b"plain", media_type="text/plain")

    @app.get(
        "/events",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def events() -> StreamingResponse:
        async def stream() -> Any:
            yield "data: 1\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    return app


@pytest.fixture()
def served() -> Iterator[InProcessServer]:
    CHECKER.take()  # nothing of an earlier test is blamed here
    with InProcessServer(make_app()) as srv:
        yield srv
    CHECKER.take()  # what this test provoked on purpose is not blamed on its teardown


def test_documented_answers_pass_and_each_mismatch_is_named(served: InProcessServer) -> None:
    with httpx.Client(base_url=served.url, timeout=30) as http:
        assert http.get("/good").status_code == 200
        with http.stream("GET", "/events") as r:
            assert r.headers["content-type"].startswith("text/event-stream")
        assert CHECKER.take() == []
        http.get("/wrong-body")
        http.get("/wrong-status")
        http.get("/wrong-type")
        http.get("/no-such-path")  # the framework's own 404 body is not ErrorBody
    problems = CHECKER.take()
    assert len(problems) == 4, problems
    body, status, ctype, unknown = problems
    assert body.startswith("GET /wrong-body -> 200: OpenAPI 3.1") and "'one'" in body, body
    assert "at count" in body, body
    assert status.startswith("GET /wrong-status -> 418: undocumented status"), status
    assert ctype.startswith("GET /wrong-type -> 200: content type 'text/plain'"), ctype
    assert unknown.startswith("GET /no-such-path -> 404:"), unknown


def test_the_httpx_hook_checks_a_registered_origin_only(served: InProcessServer) -> None:
    install_httpx_hook()  # already installed by conftest: a second call changes nothing
    doc31 = make_app().openapi()
    assert CHECKER.document_for_url(httpx.URL(f"{served.url}/good")) is None
    CHECKER.register_origin(served.url, doc31, to_openapi_30(doc31))
    try:
        httpx.get(f"{served.url}/wrong-status", timeout=30)
        problems = CHECKER.take()
    finally:
        CHECKER.unregister_origin(served.url)
    # seen twice: by the server-side wrap and by the hook on the client side
    assert len(problems) == 2 and all("418: undocumented status" in p for p in problems), problems
    assert CHECKER.document_for_url(httpx.URL(f"{served.url}/good")) is None
