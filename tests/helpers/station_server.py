"""A real HTTP service in this process over a Runner that loaded a test package (not a test module).

The app is the production `create_app`, served by uvicorn on an ephemeral port of the given host;
the Runner's workers are real processes and the frames go through real shared memory.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from helpers.openapi_check import checked_app
from procvision_runner import Runner, RunnerConfig
from procvision_runner.service import ServiceConfig, create_app
from procvision_runner.store import PackageManager, PackageStore

ALGOS = Path(__file__).resolve().parents[1] / "algos" / "runner"


class StationServer:
    """Loads packages into a Runner, serves the app on `host`:<ephemeral>, stops everything."""

    def __init__(
        self,
        root: Path,
        packages: list[Path],
        *,
        host: str = "127.0.0.1",
        service: dict[str, Any] | None = None,
        runner: RunnerConfig | None = None,
    ) -> None:
        self.root = root
        self.packages = packages
        self.host = host
        self.service = ServiceConfig.from_mapping(service or {})
        self.runner_config = runner or RunnerConfig(heartbeat_interval_ms=5000)
        self.runner: Runner | None = None
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None
        self.port = 0
        self.app: Any = None

    @property
    def url(self) -> str:
        """Base URL of the service."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> StationServer:
        """Load the packages, bind, serve in a thread; wait (deadline) until it accepts."""
        self.runner = Runner(self.runner_config)
        try:
            for path in self.packages:
                self.runner.load(path)
            store = PackageStore(self.root / "store", lock_timeout_s=5.0).open()
            manager = PackageManager(store, self.runner)
            self.app = create_app(manager, self.runner, self.service, start_packages=False)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, 0))
            self.port = int(sock.getsockname()[1])
            # every response, to any client (the C example too), is checked against the document
            config = uvicorn.Config(checked_app(self.app), log_level="warning", lifespan="on")
            self.server = uvicorn.Server(config)
            server = self.server
            self.thread = threading.Thread(
                target=lambda: server.run(sockets=[sock]), name="station-server", daemon=True
            )
            self.thread.start()
            deadline = time.monotonic() + 60
            while not server.started:
                if time.monotonic() > deadline or not self.thread.is_alive():
                    raise RuntimeError("the in-process server did not start")
                time.sleep(0.02)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop serving (deadline), then close the Runner (workers reaped, slots unlinked)."""
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(30)
            self.thread = None
        if self.runner is not None:
            self.runner.close()
            self.runner = None

    def __enter__(self) -> StationServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
