"""/sessions/*: reset, close and the log records of a detection run."""

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from .context import ServiceContext
from .models import SESSION_PATTERN, responses

__all__ = ["sessions_router"]

SessionId = Annotated[str, PathParam(pattern=SESSION_PATTERN)]


def sessions_router(ctx: ServiceContext) -> APIRouter:
    """Routes over the Runner's sessions (all protected, GET included)."""
    router = APIRouter()
    runner = ctx.runner

    @router.post(
        "/sessions/{session_id}/reset",
        dependencies=ctx.auth,
        responses=responses(401, 404, 413, 422),
        summary="Restart a detection run (the algorithm's reset hook)",
    )
    async def reset_session(session_id: SessionId) -> dict[str, Any]:
        """Reset a session."""
        await ctx.known_session(session_id)
        await run_in_threadpool(runner.reset, session_id)
        return {"session_id": session_id, "status": "reset"}

    @router.delete(
        "/sessions/{session_id}",
        dependencies=ctx.auth,
        responses=responses(401, 404, 413, 422),
        summary="Close a session and drop its state",
    )
    async def close_session(session_id: SessionId) -> dict[str, Any]:
        """Close a session."""
        await ctx.known_session(session_id)
        await run_in_threadpool(runner.close_session, session_id)
        return {"session_id": session_id, "status": "closed"}

    @router.get(
        "/sessions/{session_id}/logs",
        dependencies=ctx.auth,
        responses=responses(401, 404, 413, 422),
        summary="The session's recent worker log records",
    )
    async def session_logs(session_id: SessionId) -> list[dict[str, Any]]:
        """Log records of a session."""
        await ctx.known_session(session_id)
        return list(await run_in_threadpool(runner.session_logs, session_id))

    return router
