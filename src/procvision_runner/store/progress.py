"""Progress of a long store flow (an install): its phases, and where each step is reported.

An install reports every step as `(phase, message)`: to the callback its caller gave (the CLI
prints it, an HTTP install job records it) and, always, to the `procvision_runner.store` logger,
so a server's structured log shows what its installs did.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["PHASES", "ProgressFn", "Reporter", "print_progress"]

ProgressFn = Callable[[str, str], None]

# check: zip, manifest, wheels, dependency closure, signature; unpack: into a temporary dir;
# venv: create it and install the wheels; smoke: start it in a worker (setup, get_info);
# register: rename into place, write the registry, prune old versions; done: installed.
PHASES = ("check", "unpack", "venv", "smoke", "register", "done")

log = logging.getLogger("procvision_runner.store")


class Reporter:
    """Reports the steps of one flow to its caller's callback and to the log."""

    def __init__(self, action: str, progress: ProgressFn | None = None) -> None:
        self.action = action
        self.progress = progress
        self.phase = ""

    def __call__(self, phase: str, message: str) -> None:
        """Report one step of `phase`."""
        self.phase = phase
        log.info(message, extra={"action": self.action, "phase": phase})
        if self.progress is not None:
            self.progress(phase, message)


def print_progress(stream: TextIO) -> ProgressFn:
    """A callback that prints each step as `[  1.2s] phase: message` (flushed: pipes see it)."""
    started = time.monotonic()

    def show(phase: str, message: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {phase}: {message}", file=stream, flush=True)

    return show
