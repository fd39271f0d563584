"""A real local Ray cluster of simulated nodes, kept on loopback, owned by one test process.

Each node is a `ray start --block` child of this process (the head first, then one per extra
node, each with a custom resource naming it), run through ray_start.py so that Ray takes
127.0.0.1 as the node address (it would otherwise swap loopback for the machine's LAN
address), with every port picked here on 127.0.0.1; the driver (`connect`) is pinned the same
way. Stopping a node is a SIGTERM to
its `ray start --block` process, which stops the processes it started; every process of the
cluster is then waited for. The temp dir (sessions, logs, sockets) is removed at the end.

The head's dashboard process reaches out even with usage stats disabled: it asks the cloud
metadata address (169.254.169.254) which cloud it runs on unless `~/ray_bootstrap_config.yaml`
names a provider (so HOME points into the temp dir, at a `provider: local` file), and it
reports "usage stats disabled" to usage-stats.ray.io (so RAY_USAGE_STATS_REPORT_URL points at
a closed port on 127.0.0.1). Found with strace and an audit hook; docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from helpers.ray_start import pin_to_loopback
from helpers.runner_kit import alive
from procvision_runner.proctable import descendants

__all__ = ["LocalRayCluster", "free_port"]

RAY_START = Path(__file__).with_name("ray_start.py")  # `ray start`, patient with slow nodes
START_TIMEOUT_S = 300.0
START_ATTEMPTS = 2
STOP_TIMEOUT_S = 60.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalRayCluster:
    """`nodes` simulated Ray nodes on 127.0.0.1, each with resource `node_<i>`: 1."""

    def __init__(self, nodes: int = 2, object_store_bytes: int = 300 * 1024 * 1024) -> None:
        # short: Ray puts unix sockets under it (108-byte path limit)
        self.temp_dir = Path(tempfile.mkdtemp(prefix="pvray-", dir="/tmp"))
        self.home = self.temp_dir / "home"
        self.home.mkdir()
        (self.home / "ray_bootstrap_config.yaml").write_text("provider:\n  type: local\n")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "HOME": str(self.home),
            "RAY_USAGE_STATS_ENABLED": "0",
            # with usage stats off, the head still tells usage-stats.ray.io so (a DNS lookup
            # and an HTTPS call); Ray's own knob for that URL points it at a closed local port
            "RAY_USAGE_STATS_REPORT_URL": f"http://127.0.0.1:{free_port()}/",
            "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
            # Ray's own switch for "node address = loopback" in every process a node starts
            # (no UDP probe towards 8.8.8.8); ray_start.py still lets a second node join
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            # a raylet waits this long for its dashboard agent (slow to import under load)
            "RAY_agent_register_timeout_ms": "180000",
            "PV_RAY_NODE_WAIT_S": "180",
            # no idle workers started ahead of need (the tests' actors start their own)
            "RAY_enable_worker_prestart": "0",
            "RAY_prestart_worker_first_driver": "0",
        }
        self.object_store_bytes = object_store_bytes
        self.procs: list[subprocess.Popen[bytes]] = []
        self._seen: set[int] = set()
        self.node_count = nodes
        self.metrics_ports: list[int] = []  # each node's Prometheus endpoint (Ray's metrics)

    def start(self, nodes: int | None = None) -> LocalRayCluster:
        """Start the head, then the other nodes, each once its `ray start` says it started.

        With `nodes`, only up to that many nodes run after this call; a later `start()` starts
        the rest (a caller can deploy on the head while the other nodes come up).
        """
        for index in range(len(self.procs), min(nodes or self.node_count, self.node_count)):
            self._start_node(index)
        return self

    def _start_node(self, index: int) -> None:
        # a node that still fails to come up (ray_start.py waits longer than Ray) gets a retry
        for attempt in range(START_ATTEMPTS):
            try:
                self._try_start_node(index, attempt)
                return
            except RuntimeError:
                if attempt == START_ATTEMPTS - 1:
                    raise

    def _try_start_node(self, index: int, attempt: int) -> None:
        if attempt:
            self.procs.pop()
            self.metrics_ports.pop()
            if index == 0:
                self.port = free_port()
                self.address = f"127.0.0.1:{self.port}"
        self.metrics_ports.append(free_port())
        common = [
            "--block",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            f"--object-store-memory={self.object_store_bytes}",
            "--disable-usage-stats",
            # drivers connect with log_to_driver=False: nobody reads what a log monitor ships
            "--include-log-monitor=false",
            f"--resources={json.dumps({f'node_{index}': 1})}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={self.metrics_ports[index]}",
            f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}",
        ]
        if index == 0:
            role = [
                "--head",
                f"--port={self.port}",
                "--include-dashboard=false",
                "--dashboard-host=127.0.0.1",
                # no autoscaler on a fixed local cluster
                "--no-monitor",
                f"--temp-dir={self.temp_dir}",
            ]
        else:
            role = [f"--address={self.address}"]
        log = self.temp_dir / f"node-{index}-{attempt}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, str(RAY_START), "start", *role, *common],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        self.procs.append(proc)
        deadline = time.monotonic() + START_TIMEOUT_S
        while b"Ray runtime started" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop_node(index)
                raise RuntimeError(f"ray node {index} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)

    def connect(self, namespace: str) -> Any:
        """ray.init this process as a driver of the cluster, on loopback; return `ray`."""
        import ray

        pin_to_loopback()
        ray.init(
            address=self.address,
            _node_ip_address="127.0.0.1",
            namespace=namespace,
            log_to_driver=False,
        )
        self.wait_nodes(len(self.procs))
        return ray

    def wait_nodes(self, count: int) -> None:
        """Wait until `count` nodes are alive in the cluster (a connected driver asks)."""
        import ray

        deadline = time.monotonic() + START_TIMEOUT_S
        while len([n for n in ray.nodes() if n["Alive"]]) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"fewer than {count} Ray nodes alive: {ray.nodes()}")
            time.sleep(0.2)

    def node_processes(self, index: int) -> list[int]:
        """The live processes of node `index` (its `ray start` and everything below it)."""
        proc = self.procs[index]
        pids = [proc.pid, *(p.pid for p in descendants(proc.pid))] if proc.poll() is None else []
        self._seen.update(pids)
        return pids

    def stop_node(self, index: int) -> None:
        """Stop one node (SIGTERM to its `ray start --block`) and wait for all its processes."""
        proc = self.procs[index]
        pids = self.node_processes(index)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT_S)
        self._wait_gone(pids)

    def _wait_gone(self, pids: list[int]) -> None:
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while any(alive(p) for p in pids):
            if time.monotonic() > deadline:
                for pid in pids:
                    if alive(pid):
                        with contextlib.suppress(OSError):
                            os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.1)

    def leftovers(self) -> list[int]:
        """Processes this cluster started that are still alive."""
        return sorted(p for p in self._seen if alive(p))

    def close(self) -> None:
        """Stop every node, last first; remove the temp dir."""
        for index in reversed(range(len(self.procs))):
            self.stop_node(index)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
