"""Running the app: `serve` on uvicorn (`procvision-runner serve` in `procvision_runner.cli`)."""

import logging
import signal
import sys
import threading
import time
from typing import Any

from procvision_algorithm_sdk.errors import INVALID_PARAMS

from .app import create_app
from .connections import guarded_protocol
from .guard import check_bind
from .logsetup import LogSettings, configure_logging
from .settings import ServiceConfig

__all__ = ["banner", "log_settings", "serve"]

log = logging.getLogger("procvision_runner.service")


def serve(
    manager: Any,
    runner: Any,
    config: ServiceConfig,
    host: str | None = None,
    port: int | None = None,
) -> int:
    """Run the service on uvicorn until SIGINT/SIGTERM; returns a process exit code."""
    import uvicorn

    bind_host = host or config.host
    bind_port = config.port if port is None else port
    refusal = check_bind(bind_host, config)
    if refusal:
        log.error(refusal)
        print(f"error {INVALID_PARAMS}: {refusal}", flush=True, file=sys.stderr)
        return 1
    try:
        undo_logging = configure_logging(log_settings(config))
    except OSError as exc:
        print(f"error {INVALID_PARAMS}: log file: {exc}", flush=True, file=sys.stderr)
        return 1
    app = create_app(manager, runner, config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=bind_host,
            port=bind_port,
            log_level=config.log_level,
            log_config=None,  # uvicorn's records go to the one JSON log (logsetup)
            access_log=False,  # AccessLog writes the access lines, with their duration
            lifespan="on",
            timeout_graceful_shutdown=10,
            http=guarded_protocol(config.header_timeout_s, config.max_connections),
            timeout_keep_alive=config.keep_alive_s,
        )
    )
    started = time.monotonic()
    # uvicorn re-raises the stop signal once it has shut down; with the default handlers that
    # would kill the process before the caller closes the Runner (worker teardown, slot
    # unlinking). These handlers only note the signal, so a stop is an orderly return.
    stops: list[int] = []
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, _frame: stops.append(signum))
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("service stopped after %.1f s", time.monotonic() - started)
        undo_logging()
    return 0 if server.started else 1


def log_settings(config: ServiceConfig) -> LogSettings:
    """The log settings of the `[service]` table."""
    return LogSettings(
        level=config.log_level,
        file=config.log_file,
        max_bytes=config.log_max_bytes,
        backup_count=config.log_backup_count,
    )


def banner(manager: Any, host: str, port: int) -> str:
    """What `serve` says on start: version, URL and docs, store, packages and their pids."""
    from procvision_algorithm_sdk._version import __version__

    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    lines = [
        f"procvision-runner {__version__} serving {url} (OpenAPI: {url}/docs)",
        f"  store: {manager.store.root}",
    ]
    packages = manager.list()
    if not packages:
        lines.append("  packages: none installed (POST /algorithms/install)")
    for p in packages:
        pids = ", ".join(p.get("active_pids") or []) or "no pid bound"
        lines.append(f"  package {p['name']} {p['version']} [{p['state']}]: {pids}")
    return "\n".join(lines)
