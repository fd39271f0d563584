"""A real `procvision-runner serve` in a subprocess, for the HTTP tests (not a test module)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from helpers.openapi_check import CHECKER

REPO = Path(__file__).resolve().parents[2]
# The installed console script, as operators run it.
RUNNER_CLI = [str(Path(sys.executable).with_name("procvision-runner"))]


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RunnerServer:
    """Starts `procvision-runner --store S [--config C] serve`, waits for /healthz, stops it."""

    def __init__(
        self,
        store: Path,
        *,
        config: dict[str, Any] | None = None,
        host: str = "127.0.0.1",
        env: dict[str, str] | None = None,
        startup_timeout_s: float = 60.0,
    ) -> None:
        self.store = store
        self.host = host
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.log_path = store.parent / f"server-{self.port}.log"
        self.config_path: Path | None = None
        if config is not None:
            self.config_path = store.parent / f"config-{self.port}.json"
            self.config_path.write_text(json.dumps(config), encoding="utf-8")
        self.env = dict(os.environ)
        self.env.pop("PROCVISION_TOKEN", None)
        self.env.update(env or {})
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The command line of the server."""
        cmd = [*RUNNER_CLI, "--store", str(self.store)]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        return [*cmd, "serve", "--host", self.host, "--port", str(self.port)]

    def start(self) -> RunnerServer:
        """Start the server and wait (with a deadline) until /healthz answers."""
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed when the process is reaped
        self._log = log
        self.proc = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.store.parent,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_timeout_s
        # one client for every poll: each new httpx client loads the CA bundle (~0.05 CPU-s),
        # which polling with httpx.get paid once per poll
        with httpx.Client(base_url=self.url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    if client.get("/healthz").status_code == 200:
                        self._register_document(client)
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not answer /healthz in {self.startup_timeout_s} s")

    def _register_document(self, client: httpx.Client) -> None:
        # the tests' httpx responses from this server are checked against what it serves
        doc31 = client.get("/openapi.json", timeout=60.0).raise_for_status().json()
        doc30 = client.get("/openapi-3.0.json", timeout=60.0).raise_for_status().json()
        CHECKER.register_origin(self.url, doc31, doc30)

    def wait_ready(self, timeout_s: float = 180.0) -> dict[str, Any]:
        """Poll /readyz until 200 (deadline); returns its body."""
        deadline = time.monotonic() + timeout_s
        body: dict[str, Any] = {}
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            while time.monotonic() < deadline:
                r = client.get("/readyz")
                body = r.json()
                if r.status_code == 200:
                    return body
                time.sleep(0.05)
        raise RuntimeError(f"not ready after {timeout_s} s: {body}")

    def log(self) -> str:
        """The server's combined stdout/stderr so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, wait with a deadline, then SIGKILL the whole group; always reaps."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        CHECKER.unregister_origin(self.url)
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
        finally:
            self._log.close()
        return proc.returncode

    def __enter__(self) -> RunnerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
