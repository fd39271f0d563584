"""The worker process: `python -m procvision_algorithm_sdk.adapter` runs one algorithm over frames.

Start-up order matters (contract sections 6 and 10): the protocol is moved to private copies of
fd 0 and fd 1 and fd 1 is pointed at stderr *before* any algorithm code is imported, then the
algorithm is imported and instantiated, and only then is `hello` sent. A reader thread decodes
frames and answers `ping` at once; calls run on the main thread one at a time. The wire details
are in docs/architecture.md, "Worker protocol details". This package re-exports every name the
single `adapter` module offered.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .calls import DEFAULT_MAX_DEFECTS, METHODS, CallHandler, prefetch_image
    from .entry import EXIT_GRACE_S, SESSION_CACHE_ENV, main
    from .loop import (
        BUSY_MESSAGE,
        EXIT_OK,
        EXIT_START_FAILED,
        EXIT_STREAM_BROKEN,
        WATCHDOG_IDLE_S,
        Worker,
        WorkerLoop,
    )
    from .outcome import Outcome, evaluate_result, exception_outcome, json_safe
    from .sessions import DEFAULT_SESSION_CACHE, DEFAULT_SESSION_ID, SessionCache, SessionEntry
    from .startup import (
        ENTRY_ENV,
        ROOT_ENV,
        StartupError,
        discover_entry,
        entry_point_from_toml_text,
        load_algorithm,
        protect_stdio,
    )

__all__ = [
    "BUSY_MESSAGE",
    "DEFAULT_MAX_DEFECTS",
    "DEFAULT_SESSION_CACHE",
    "DEFAULT_SESSION_ID",
    "ENTRY_ENV",
    "EXIT_GRACE_S",
    "EXIT_OK",
    "EXIT_START_FAILED",
    "EXIT_STREAM_BROKEN",
    "METHODS",
    "ROOT_ENV",
    "SESSION_CACHE_ENV",
    "WATCHDOG_IDLE_S",
    "CallHandler",
    "Outcome",
    "SessionCache",
    "SessionEntry",
    "StartupError",
    "Worker",
    "WorkerLoop",
    "discover_entry",
    "entry_point_from_toml_text",
    "evaluate_result",
    "exception_outcome",
    "json_safe",
    "load_algorithm",
    "main",
    "prefetch_image",
    "protect_stdio",
]

_SUBMODULES = ("calls", "entry", "loop", "outcome", "sessions", "startup")

# The re-exports load on first access (PEP 562): the developer tools import light submodules
# (tracebacks, entry_hints) and must not pay for the worker loop and numpy. The worker itself
# (`python -m procvision_algorithm_sdk.adapter`) imports what `entry` needs either way.
_HOME = {  # each re-exported name -> the submodule that defines it
    "BUSY_MESSAGE": "loop",
    "CallHandler": "calls",
    "DEFAULT_MAX_DEFECTS": "calls",
    "DEFAULT_SESSION_CACHE": "sessions",
    "DEFAULT_SESSION_ID": "sessions",
    "ENTRY_ENV": "startup",
    "EXIT_GRACE_S": "entry",
    "EXIT_OK": "loop",
    "EXIT_START_FAILED": "loop",
    "EXIT_STREAM_BROKEN": "loop",
    "METHODS": "calls",
    "Outcome": "outcome",
    "ROOT_ENV": "startup",
    "SESSION_CACHE_ENV": "entry",
    "SessionCache": "sessions",
    "SessionEntry": "sessions",
    "StartupError": "startup",
    "WATCHDOG_IDLE_S": "loop",
    "Worker": "loop",
    "WorkerLoop": "loop",
    "discover_entry": "startup",
    "entry_point_from_toml_text": "startup",
    "evaluate_result": "outcome",
    "exception_outcome": "outcome",
    "json_safe": "outcome",
    "load_algorithm": "startup",
    "main": "entry",
    "prefetch_image": "calls",
    "protect_stdio": "startup",
}


def __getattr__(name: str) -> Any:
    """Load the re-exported names (and the submodules that hold them) on first access."""
    if name in _SUBMODULES:  # `adapter.calls` without importing it, as the eager package allowed
        return importlib.import_module(f"{__name__}.{name}")
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import calls, entry, loop, outcome, sessions, startup

    modules = {"calls": calls, "entry": entry, "loop": loop, "outcome": outcome}
    modules.update(sessions=sessions, startup=startup)
    globals().update((n, getattr(modules[home], n)) for n, home in _HOME.items())
    return globals()[name]
