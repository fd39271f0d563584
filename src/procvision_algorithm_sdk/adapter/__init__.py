"""The worker process: `python -m procvision_algorithm_sdk.adapter` runs one algorithm over frames.

Start-up order matters (contract sections 6 and 10): the protocol is moved to private copies of
fd 0 and fd 1 and fd 1 is pointed at stderr *before* any algorithm code is imported, then the
algorithm is imported and instantiated, and only then is `hello` sent. A reader thread decodes
frames and answers `ping` at once; calls run on the main thread one at a time. The wire details
are in docs/architecture.md, "Worker protocol details". This package re-exports every name the
single `adapter` module offered.
"""

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
