"""What the routers share: the manager, the Runner, settings, metrics, start-up state, auth."""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from procvision_algorithm_sdk.errors import INVALID_PARAMS, UNKNOWN_ERROR

from ..metrics import ServiceMetrics
from .decoding import Decoder
from .errors import ApiError
from .guard import UNAUTHORIZED_MESSAGE, token_matches
from .jobs import JobLimits, JobRegistry
from .live import LiveFeed
from .settings import ServiceConfig

if TYPE_CHECKING:
    from ..runner import Runner
    from ..store.manager import PackageManager

__all__ = ["ServiceContext", "Startup", "session_exists"]


class Startup:
    """Tracks the background warm-up of every active package."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: str | None = None
        self.thread: threading.Thread | None = None


def session_exists(runner: "Runner", session_id: str) -> bool:
    """Whether the Runner keeps state for this session (expired sessions do not count)."""
    return runner.has_session(session_id)


_bearer = HTTPBearer(auto_error=False, description="the service token")


@dataclass
class ServiceContext:
    """The state one app's routes close over; `auth` is the dependency list of protected routes."""

    manager: "PackageManager"
    runner: "Runner"
    cfg: ServiceConfig
    metrics: ServiceMetrics
    startup: Startup = field(default_factory=Startup)
    # one store mutation at a time from this process
    manage_lock: threading.Lock = field(default_factory=threading.Lock)
    auth: list[Any] = field(init=False)
    decoder: Decoder = field(init=False)
    jobs: JobRegistry = field(init=False)  # install jobs (POST /algorithms/install?async=true)
    live: LiveFeed | None = None  # the operator page's feed (set by create_app)
    local_socket: Path | None = None  # where the local socket listens (set at start-up)

    def __post_init__(self) -> None:
        self.decoder = Decoder(
            self.cfg.decode_budget_pixels, self.cfg.decode_wait_ms, self.cfg.max_image_pixels
        )
        self.jobs = JobRegistry(
            JobLimits(
                max_active=self.cfg.jobs_max_active,
                max_kept=self.cfg.jobs_max_kept,
                keep_s=float(self.cfg.jobs_keep_s),
            )
        )
        token = self.cfg.token or None

        async def authorize(
            request: Request,
            _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        ) -> None:
            # The bearer dependency documents the scheme in OpenAPI; the check is the guard's.
            # async: a plain `def` dependency runs in the thread pool, a thread hop per call.
            if token is None:
                return
            if not token_matches(token, request.headers.get("authorization", "")):
                raise ApiError(
                    401, UNKNOWN_ERROR, UNAUTHORIZED_MESSAGE, {"WWW-Authenticate": "Bearer"}
                )

        self.auth = [Depends(authorize)]

    def publish(
        self,
        pid: str,
        step_index: int,
        session_id: str | None,
        answer: dict[str, Any],
        frame: Any = None,
    ) -> None:
        """Hand an answered inspection to the page (O(1); `frame` must not change afterwards)."""
        if self.live is not None:
            self.live.publish(pid, step_index, session_id, answer, frame)

    async def managed(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a store mutation in a worker thread under the management lock."""

        def locked() -> Any:
            with self.manage_lock:
                return fn(*args, **kwargs)

        return await run_in_threadpool(locked)

    def upload_dir(self) -> Path:
        """The store's temporary directory, where uploads are streamed."""
        return Path(self.manager.store.tmp)

    async def known_version(self, name: str, version: str) -> None:
        """Raise 404 unless `name` `version` is installed."""
        entries = await run_in_threadpool(self.manager.list, None, name)
        if not any(str(e.get("version")) == version for e in entries):
            raise ApiError(404, INVALID_PARAMS, f"{name} {version} is not installed")

    async def known_session(self, session_id: str) -> None:
        """Raise 404 unless the Runner keeps state for `session_id`."""
        if not await run_in_threadpool(session_exists, self.runner, session_id):
            raise ApiError(404, INVALID_PARAMS, f"no session {session_id!r}")
