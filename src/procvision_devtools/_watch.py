"""Deadlines for in-process algorithm calls (quick `validate`): a call that never returns is 1005.

The quick validate calls the algorithm in this process, so a stuck call cannot be killed; the
calls run on a daemon thread while the caller's thread watches the deadline of the phase in
progress, reports 1005 naming it, and returns (the CLI then exits, ending the stuck thread).
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["PHASE_DEADLINES_S", "PhaseWatch", "current_watch", "phase", "run_watched"]

# The contract's deadlines (section 7): setup/startup 60 s, pre_execute 10 s, execute 30 s.
PHASE_DEADLINES_S = {"pre_execute": 10.0, "execute": 30.0}
STARTUP_DEADLINE_S = 60.0


@dataclass
class PhaseWatch:
    """The phase running now and when it must be done; `timeout_s` overrides every deadline."""

    timeout_s: float | None = None
    name: str = ""
    limit_s: float = STARTUP_DEADLINE_S
    deadline: float = float("inf")

    def begin(self, name: str, kind: str | None = None) -> None:
        """A call `name` starts now; its deadline is the phase's (kind) or --timeout."""
        limit = self.timeout_s
        if limit is None:
            limit = PHASE_DEADLINES_S.get(kind or name, STARTUP_DEADLINE_S)
        self.name, self.limit_s = name, limit
        self.deadline = time.monotonic() + limit

    def idle(self) -> None:
        """Between calls: no deadline."""
        self.deadline = float("inf")


_CURRENT: contextvars.ContextVar[PhaseWatch | None] = contextvars.ContextVar(
    "procvision_watch", default=None
)


def current_watch() -> PhaseWatch | None:
    """The watch of the validate running in this context, if any."""
    return _CURRENT.get()


def phase(name: str, kind: str | None = None) -> None:
    """Mark the start of an algorithm call for the running watch (no-op without one)."""
    watch = _CURRENT.get()
    if watch is not None:
        watch.begin(name, kind)


def run_watched(work: Callable[[], None], watch: PhaseWatch, poll_s: float = 0.05) -> str | None:
    """Run `work` on a daemon thread; None when it finished, else the phase that overran."""
    token = _CURRENT.set(watch)
    try:
        context = contextvars.copy_context()
    finally:
        _CURRENT.reset(token)
    failure: list[BaseException] = []

    def target() -> None:
        try:
            context.run(work)
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="pv-validate-call", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(poll_s)
        if thread.is_alive() and time.monotonic() > watch.deadline:
            return watch.name
    if failure:
        raise failure[0]
    return None
