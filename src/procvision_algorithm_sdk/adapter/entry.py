"""The worker process's `main`: start up, send hello, serve calls, exit."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from .. import protocol
from ..errors import MODEL_NOT_FOUND
from ..logger import install_logging_bridge
from .loop import EXIT_OK, EXIT_START_FAILED, WorkerLoop
from .outcome import log
from .sessions import DEFAULT_SESSION_CACHE
from .startup import StartupError, discover_entry, load_algorithm, protect_stdio
from .strict_stdio import StdoutGuard, strict_from_env
from .tracebacks import user_location, user_traceback

__all__ = ["EXIT_GRACE_S", "SESSION_CACHE_ENV", "main"]

SESSION_CACHE_ENV = "PROC_SESSION_CACHE"
# After teardown the interpreter may still wait for threads the algorithm left running.
EXIT_GRACE_S = 5.0


def _exit_watchdog(code: int) -> None:
    """Leave the process even if threads the algorithm started keep the interpreter alive."""

    def _force() -> None:
        time.sleep(EXIT_GRACE_S)
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(code)

    threading.Thread(target=_force, name="exit-watchdog", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """Run the worker; return its exit code (0 normal, 2 start-up failed, 3 stream broken)."""
    parser = argparse.ArgumentParser(
        prog="python -m procvision_algorithm_sdk.adapter",
        description="Run one algorithm package as a resident worker over the frame protocol.",
    )
    parser.add_argument("--entry", help="module.path:ClassName (overrides discovery)")
    args = parser.parse_args(argv)

    protocol_in, protocol_out = protect_stdio()
    guard = StdoutGuard() if strict_from_env() else None
    install_logging_bridge()
    logging.captureWarnings(True)

    try:
        entry, source, root = discover_entry(args.entry, os.environ, Path.cwd())
        log.debug("loading algorithm", entry_point=entry, source=source)
        algorithm = load_algorithm(entry, root)
    except StartupError as exc:
        cause = exc.__cause__ or exc
        fields = {"error_code": MODEL_NOT_FOUND}
        where = user_location(cause)
        if where is not None:  # none: a name that does not exist; the message says it all
            fields["where"] = where
            fields["traceback"] = user_traceback(cause)
        log.error(f"worker start failed: {exc}", **fields)
        with contextlib.suppress(OSError):
            protocol.write_frame(
                protocol_out, protocol.error(None, f"start failed: {exc}", MODEL_NOT_FOUND)
            )
        return EXIT_START_FAILED

    capacity = DEFAULT_SESSION_CACHE
    with contextlib.suppress(ValueError):
        capacity = int(os.environ.get(SESSION_CACHE_ENV, DEFAULT_SESSION_CACHE))
    worker = WorkerLoop(
        algorithm,
        protocol_in,
        protocol_out,
        entry_point=entry,
        session_capacity=capacity,
        root=root,
        stdout_guard=guard,
    )
    signal.signal(signal.SIGTERM, worker.on_signal)
    signal.signal(signal.SIGINT, worker.on_signal)
    if not worker.send(worker.hello()):
        worker.teardown_once()
        return EXIT_OK
    worker.start_reader()
    code = worker.serve()
    _exit_watchdog(code)
    return code
