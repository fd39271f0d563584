"""The operator page: `/`, its live stream, its state, the result archive, offline API docs.

Every asset is served by the Runner itself (the page's own files and the Swagger UI / ReDoc files
shipped by the `fastapi-offline` wheel), so the page and `/docs` work with the network cable
pulled.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from procvision_algorithm_sdk.errors import INVALID_PARAMS

from ..archive import ENTRY_ID_PATTERN
from ..memory import rss_bytes
from .context import ServiceContext
from .errors import ApiError
from .health import readiness
from .live import LiveFeed
from .models import responses

__all__ = ["docs_offline", "mount_page_assets", "page_router"]

PAGE_DIR = Path(str(resources.files("procvision_runner.service") / "static"))
_STREAM_S = 25.0  # one event stream lives this long; the browser's EventSource reconnects
_AUDIT_LINES = 50
_REDOC_CDN_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
ArchiveId = Annotated[str, PathParam(pattern=ENTRY_ID_PATTERN)]


def _docs_assets() -> Path | None:
    """The Swagger UI / ReDoc files of the fastapi-offline wheel, None when it is absent."""
    try:
        return Path(str(resources.files("fastapi_offline") / "static"))
    except ModuleNotFoundError:
        return None


def docs_offline() -> bool:
    """Whether /docs and /redoc can be served from this process's own files."""
    return _docs_assets() is not None


def mount_page_assets(app: FastAPI) -> None:
    """Serve the page's files and the API docs' files from this process."""
    app.mount("/static/page", StaticFiles(directory=PAGE_DIR), name="page-assets")
    docs = _docs_assets()
    if docs is None:
        return
    app.mount("/static/docs", StaticFiles(directory=docs), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API",
            swagger_js_url="/static/docs/swagger-ui-bundle.js",
            swagger_css_url="/static/docs/swagger-ui.css",
            swagger_favicon_url="/static/docs/favicon.png",
        )

    redoc_js = (
        (docs / "redoc.standalone.js")
        .read_bytes()
        .replace(_REDOC_CDN_LOGO, b"/static/docs/favicon.png")
    )

    @app.get("/static/redoc.js", include_in_schema=False)
    async def redoc_script() -> Response:
        # ReDoc's footer draws its logo from a CDN: point it at a file of ours instead.
        return Response(redoc_js, media_type="text/javascript")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - ReDoc",
            redoc_js_url="/static/redoc.js",
            redoc_favicon_url="/static/docs/favicon.png",
            with_google_fonts=False,
        )


def _workers(stats: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(w, rss_bytes=rss_bytes(w.get("pid"))) for w in stats.get("workers") or []]


def _audit(manager: Any) -> list[dict[str, Any]]:
    store = getattr(manager, "store", None)
    audit = getattr(store, "audit", None)
    if audit is None:
        return []
    try:
        lines = list(audit.read())
    except Exception:
        return []
    return lines[-_AUDIT_LINES:][::-1]


def page_state(ctx: ServiceContext, live: LiveFeed) -> dict[str, Any]:
    """Everything the page shows besides the live stream."""
    manager, runner = ctx.manager, ctx.runner
    try:
        installed = manager.list()
    except Exception as exc:
        installed = [{"error": str(exc)}]
    archive = live.archive.usage() if live.archive is not None else None
    stats = runner.stats()
    return {
        "ready": readiness(manager, runner, ctx.startup),
        "installed": installed,
        "loaded": runner.packages(),
        "routes": {pid: {"name": k[0], "version": k[1]} for pid, k in runner.routes().items()},
        "workers": _workers(stats),
        "restarts": stats.get("restarts", 0),
        "counts": live.counts.snapshot(),
        "sessions": runner.recent_sessions(20),
        "audit": _audit(manager),
        "archive": archive,
        "dropped_live_results": live.dropped,
    }


def _sse(event: dict[str, Any]) -> str:
    return f"id: {event['seq']}\nevent: result\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"


def page_router(ctx: ServiceContext, live: LiveFeed) -> APIRouter:
    """The page, its stream and state, and the archive's API."""
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE_DIR / "index.html", media_type="text/html")

    @router.get("/page/state", summary="What the operator page shows (besides live results)")
    async def state() -> dict[str, Any]:
        """Readiness, packages, workers, pid map, verdict counts, sessions, audit log."""
        live.touch()
        return await run_in_threadpool(page_state, ctx, live)

    @router.get("/page/events", include_in_schema=False)
    async def events(request: Request) -> StreamingResponse:
        try:
            seq = int(
                request.headers.get("last-event-id") or request.query_params.get("since") or 0
            )
        except ValueError:
            seq = 0

        async def stream() -> AsyncIterator[str]:
            nonlocal seq
            loop = asyncio.get_running_loop()
            end = loop.time() + _STREAM_S
            yield "retry: 500\n\n"
            while loop.time() < end and not live.closed:
                live.touch()
                batch = await run_in_threadpool(live.wait, seq, 0.5)
                for event in batch:
                    seq = event["seq"]
                    yield _sse(event)
                if not batch:
                    yield ": idle\n\n"
                if await request.is_disconnected():
                    return

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    @router.get("/page/live/{seq}/thumb.jpg", include_in_schema=False)
    async def live_thumb(seq: int) -> Response:
        data = live.thumbnail(seq)
        if data is None:
            raise ApiError(404, INVALID_PARAMS, f"no live thumbnail {seq}")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=600"})

    def archive_or_404() -> Any:
        if live.archive is None:
            raise ApiError(404, INVALID_PARAMS, "the result archive is off")
        return live.archive

    @router.get("/results", responses=responses(404, 422), summary="Archived results, newest first")
    async def results(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict[str, Any]]:
        """The newest archived results (NG frames, and OK samples when configured)."""
        return await run_in_threadpool(archive_or_404().list, limit)

    @router.get("/results/{entry_id}", responses=responses(404, 422), summary="One archived result")
    async def result(entry_id: ArchiveId) -> dict[str, Any]:
        """One archived result: verdict, rects, package, step, timings."""
        record = await run_in_threadpool(archive_or_404().get, entry_id)
        if record is None:
            raise ApiError(404, INVALID_PARAMS, f"no archived result {entry_id}")
        return dict(record)

    @router.get(
        "/results/{entry_id}/image",
        response_class=Response,
        responses={
            200: {"content": {"image/png": {}, "image/jpeg": {}}},
            **responses(404, 422),
        },
        summary="An archived frame (PNG) or its thumbnail (JPEG)",
    )
    async def result_image(
        entry_id: ArchiveId, thumb: Annotated[bool, Query()] = False
    ) -> FileResponse:
        """The archived frame as inspected, or its thumbnail."""
        name = "thumb.jpg" if thumb else "frame.png"
        path = archive_or_404().file(entry_id, name)
        if path is None:
            raise ApiError(404, INVALID_PARAMS, f"no archived result {entry_id}")
        return FileResponse(path, media_type="image/jpeg" if thumb else "image/png")

    return router
