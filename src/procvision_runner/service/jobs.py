"""Background jobs of the HTTP service (an install answered `202`, then `GET /jobs/{id}`).

A job runs in a thread of its own and records its phase and log lines as the flow reports them
(store.progress), then the flow's result or its error (with its code). Jobs are bounded: at most
`max_active` queued or running (more are refused before the upload is read), finished ones are
kept for `keep_s` seconds and at most `max_kept` of them. `close()` (the app's shutdown) refuses
new jobs, cancels the ones still waiting for the store, and waits for a running one within a
deadline: an install is never cut in the middle by the service, only by the process ending,
which the store's crash recovery covers.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from procvision_algorithm_sdk.errors import UNKNOWN_ERROR, ProcVisionError

from ..store.progress import ProgressFn

__all__ = ["Job", "JobLimits", "JobRegistry", "JobsBusy"]

log = logging.getLogger("procvision_runner.service.jobs")

MAX_LOG_LINES = 200  # a job's log keeps its first lines and its last ones up to this many


class JobsBusy(Exception):
    """Too many jobs queued or running, or the service is stopping (answered 503, code 1005)."""


@dataclass(frozen=True)
class JobLimits:
    """How many jobs may be queued or running, and how long finished ones are kept."""

    max_active: int = 4
    max_kept: int = 100
    keep_s: float = 3600.0


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class Job:
    """One job: its state, phase, log, and at the end its result or error."""

    job_id: str
    kind: str
    status: str = "queued"  # queued -> running -> succeeded | failed
    phase: str = "queued"
    log: list[dict[str, Any]] = field(default_factory=list)
    lines: int = 0  # log lines ever noted (each line's `seq`; a poller asks for what is new)
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    finished_mono: float | None = None
    result: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    def note(self, phase: str, message: str) -> None:
        """Record one step (the caller holds the registry's lock)."""
        self.phase = phase
        if len(self.log) >= MAX_LOG_LINES:
            del self.log[MAX_LOG_LINES // 2]  # keep how it started and how it is going
        self.lines += 1
        line = {"seq": self.lines, "time": _iso(time.time()), "phase": phase, "message": message}
        self.log.append(line)

    def view(self) -> dict[str, Any]:
        """The job as `GET /jobs/{id}` answers it."""
        return {
            "job_id": self.job_id,
            "kind": self.kind,
            "status": self.status,
            "phase": self.phase,
            "created_at": _iso(self.created),
            "started_at": _iso(self.started),
            "finished_at": _iso(self.finished),
            "log": [dict(line) for line in self.log],
            "result": None if self.result is None else dict(self.result),
            "error": None if self.error is None else dict(self.error),
        }


class JobRegistry:
    """The service's jobs: started, looked up, expired and stopped here."""

    def __init__(self, limits: JobLimits | None = None) -> None:
        self.limits = limits or JobLimits()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._closing = False

    def _active(self) -> int:
        return sum(1 for j in self._jobs.values() if j.finished is None)

    def check_room(self) -> None:
        """Raise JobsBusy when a new job would be refused (checked before an upload is read)."""
        with self._lock:
            self._refusal()

    def _refusal(self) -> None:
        if self._closing:
            raise JobsBusy("the service is stopping; no new job is started")
        if self._active() >= self.limits.max_active:
            raise JobsBusy(
                f"{self.limits.max_active} jobs are queued or running; retry when one has finished"
            )

    def submit(
        self,
        kind: str,
        work: Callable[[ProgressFn, Callable[[], bool]], dict[str, Any]],
        cleanup: Callable[[], None] = lambda: None,
    ) -> dict[str, Any]:
        """Start `work(progress, cancelled)` in a thread of its own; the new job's view.

        `cleanup` runs when the job ends whatever the outcome (and at once when it is refused).
        """
        with self._lock:
            self._expire()
            try:
                self._refusal()
            except JobsBusy:
                cleanup()
                raise
            job = Job(job_id=f"job_{secrets.token_urlsafe(12)}", kind=kind)
            job.note("queued", f"{kind} queued")
            self._jobs[job.job_id] = job
            job.thread = threading.Thread(
                target=self._run,
                args=(job, work, cleanup),
                name=f"procvision-{job.job_id}",
                daemon=True,  # close() waits for it within a deadline; exit must not hang on it
            )
            job.thread.start()
            return job.view()

    def get(self, job_id: str) -> dict[str, Any] | None:
        """A job's view, or None when there is no such job (or it has expired)."""
        with self._lock:
            self._expire()
            job = self._jobs.get(job_id)
            return None if job is None else job.view()

    def _run(
        self,
        job: Job,
        work: Callable[[ProgressFn, Callable[[], bool]], dict[str, Any]],
        cleanup: Callable[[], None],
    ) -> None:
        def progress(phase: str, message: str) -> None:
            with self._lock:
                if job.status == "queued":
                    job.status, job.started = "running", time.time()
                job.note(phase, message)

        def cancelled() -> bool:
            with self._lock:
                return self._closing

        result: dict[str, Any] | None = None
        error: dict[str, str] | None = None
        try:
            result = dict(work(progress, cancelled))
        except ProcVisionError as exc:
            error = {"error_code": str(exc.error_code), "message": exc.message or str(exc)}
        except Exception as exc:
            log.exception("%s job %s failed", job.kind, job.job_id)
            error = {"error_code": UNKNOWN_ERROR, "message": f"{type(exc).__name__}: {exc}"}
        finally:
            try:
                cleanup()
            finally:
                self._finish(job, result, error)

    def _finish(
        self, job: Job, result: dict[str, Any] | None, error: dict[str, str] | None
    ) -> None:
        with self._lock:
            job.result, job.error = result, error
            job.status = "failed" if error is not None or result is None else "succeeded"
            if job.status == "failed" and error is None:
                job.error = {
                    "error_code": UNKNOWN_ERROR,
                    "message": "the job ended without a result",
                }
            if job.error is not None:
                job.note("failed", f"error {job.error['error_code']}: {job.error['message']}")
            job.finished, job.finished_mono = time.time(), time.monotonic()
        error = job.error or {}
        log.info(
            "%s job %s %s%s",
            job.kind,
            job.job_id,
            job.status,
            f": error {error['error_code']}: {error['message']}" if error else "",
            extra={
                "job_id": job.job_id,
                "status": job.status,
                "error_code": error.get("error_code"),
            },
        )

    def _expire(self) -> None:
        """Drop finished jobs past their keep time, then the oldest beyond max_kept."""
        now = time.monotonic()
        done = [j for j in self._jobs.values() if j.finished_mono is not None]
        for job in done:
            if now - (job.finished_mono or now) > self.limits.keep_s:
                del self._jobs[job.job_id]
        done = [j for j in self._jobs.values() if j.finished_mono is not None]
        for job in done[: max(0, len(done) - self.limits.max_kept)]:
            del self._jobs[job.job_id]

    def close(self, wait_s: float) -> list[str]:
        """Refuse new jobs and wait up to `wait_s` for the others; ids of those still running."""
        with self._lock:
            self._closing = True
            threads = [j.thread for j in self._jobs.values() if j.thread is not None]
        deadline = time.monotonic() + wait_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = [j.job_id for j in self._jobs.values() if j.finished is None]
            self._jobs.clear()
        if left:
            log.warning("jobs still running at shutdown: %s", ", ".join(left))
        return left
