"""One store, one owner (issue 13 item 1): a serving Runner owns its store for its life.

Real `procvision-runner serve` processes on 127.0.0.1 (ephemeral ports), the real CLI in
subprocesses, one real store in tmp with two real installed versions (real venvs, real workers;
a copy of a template store, helpers/station.py). Every test first binds the pids it needs
itself, so each runs alone and in any order.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.package_zips import EXAMPLE
from helpers.server import RunnerServer
from helpers.station import Stations, cli_here

from procvision_runner.store import PackageManager, PackageStore
from procvision_runner.store.owner import live_owner, read_owner

pytestmark = pytest.mark.slow

NAME = "algorithm-example"
IMAGE = EXAMPLE / "images" / "ok_01.png"
CONFIG = {"runner": {"workers_per_package": 1, "warmup_calls": 1}}


def cli(store: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`procvision-runner --store S ARGS` in a subprocess (no token in its environment)."""
    env = {k: v for k, v in os.environ.items() if k != "PROCVISION_TOKEN"}
    return subprocess.run(
        [sys.executable, "-m", "procvision_runner.cli", "--store", str(store), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


@pytest.fixture(scope="module")
def store(stations: Stations, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1.0.0 and 1.0.1 installed, no pid bound but p001 (a copy of a template store)."""
    root = stations.copy("1.0.0+1.0.1", tmp_path_factory.mktemp("owner") / "store")
    manager = PackageManager(PackageStore(root).open())
    try:
        manager.deactivate("p002")
    finally:
        manager.close()
    return root


def bind(store: Path, **pids: str) -> None:
    """Bind each pid to a version directly (no server may own the store now).

    Set-up, not what a test checks: the CLI's commands run in this process (`cli_here`).
    """
    assert live_owner(store) is None
    active = json.loads(cli_here(store, "list", "--json").stdout)["active"]
    for pid, version in pids.items():
        if pid not in active:
            r = cli_here(store, "activate", NAME, version, "--pid", pid)
        elif active[pid]["version"] != version:
            r = cli_here(store, "switch", NAME, version, "--pid", pid)
        else:
            continue
        assert r.returncode == 0, r.stderr


@pytest.fixture
def server(store: Path) -> Iterator[RunnerServer]:
    bind(store, p001="1.0.0")
    with RunnerServer(store, config=CONFIG) as srv:
        srv.wait_ready()
        yield srv


def inspected_version(srv: RunnerServer, pid: str = "p001") -> str:
    """The version that answers an /inspect of `pid` on the server."""
    r = httpx.post(
        f"{srv.url}/inspect",
        data={"pid": pid, "step_index": "1"},
        files={"image": (IMAGE.name, IMAGE.read_bytes(), "image/png")},
        timeout=300,
    )
    assert r.status_code == 200, r.text
    execute = r.json()["execute"]
    assert execute is not None and execute["status"] == "OK", r.json()
    return str(execute["package"]["version"])


def registry_active(store: Path) -> dict[str, Any]:
    return dict(json.loads((store / "registry.json").read_text(encoding="utf-8"))["active"])


def test_cli_changes_while_serving_go_through_the_server(
    stations: Stations, store: Path, server: RunnerServer
) -> None:
    assert inspected_version(server) == "1.0.0"
    # an install is uploaded to the server: the zip's checks pass there, its registry refuses
    r = cli(store, "install", str(stations.zips["1.0.0"]))
    assert r.returncode == 1, r.stdout
    # the server's steps as they come (it runs the install as a job), then the error line
    assert "check: " in r.stderr, r.stderr
    error = r.stderr.splitlines()[-1]
    assert error.startswith(f"error 2007: {NAME} 1.0.0 is installed and bound to ['p001']")
    assert list((store / "tmp").iterdir()) == []  # the server removed its upload
    access = [json.loads(x) for x in server.log().splitlines() if '"procvision_runner.access"' in x]
    assert any(a["path"] == "/algorithms/install" and a["status"] == 202 for a in access), access
    r = cli(store, "switch", NAME, "1.0.1", "--pid", "p001")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"switched p001 to {NAME} 1.0.1 (p001 was {NAME} 1.0.0)")
    # the server that answers /inspect switched, and its readiness agrees at once
    assert inspected_version(server) == "1.0.1"
    ready = httpx.get(f"{server.url}/readyz", timeout=60)
    assert ready.status_code == 200, ready.text
    assert ready.json()["active"]["p001"]["version"] == "1.0.1"
    assert [(p["version"], p["state"]) for p in ready.json()["packages"]] == [("1.0.1", "READY")]
    # read-only commands work directly while the server owns the store
    listed = cli(store, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["active"]["p001"]["version"] == "1.0.1"
    r = cli(store, "rollback", "--pid", "p001")
    assert r.returncode == 0, r.stderr
    assert f"rolled p001 back to {NAME} 1.0.0 (from {NAME} 1.0.1)" in r.stdout
    assert inspected_version(server) == "1.0.0"
    # deactivate has its HTTP twin too; a refusal keeps the CLI's format and exit status
    r = cli(store, "activate", NAME, "1.0.0", "--pid", "p002")
    assert r.returncode == 0, r.stderr
    r = cli(store, "deactivate", "--pid", "p002")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"deactivated p002 (was {NAME} 1.0.0)"
    assert "p002" not in httpx.get(f"{server.url}/algorithms/active", timeout=60).json()
    r = cli(store, "deactivate", "--pid", "p002")
    assert r.returncode == 1
    assert r.stderr.startswith("error 1001: p002 is not bound"), r.stderr
    assert httpx.get(f"{server.url}/readyz", timeout=60).status_code == 200


def test_second_serve_is_refused_naming_the_owner_before_any_worker(
    store: Path, server: RunnerServer
) -> None:
    assert server.proc is not None
    # every Python started from an installed venv from now on leaves its pid in `marker`
    marker = store.parent / f"worker-starts-{os.getpid()}.txt"
    hooks = []
    for version in ("1.0.0", "1.0.1"):
        site = next((store / "deployed" / NAME / version / "venv" / "lib").glob("*/site-packages"))
        hook = site / "zz_test_worker_marker.pth"
        hook.write_text(
            f"import os; open({str(marker)!r}, 'a').write(str(os.getpid()) + '\\n')\n",
            encoding="utf-8",
        )
        hooks.append(hook)
    second = RunnerServer(store, config=CONFIG)
    try:
        proc = subprocess.Popen(
            second.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
    finally:
        for hook in hooks:
            hook.unlink()
    assert proc.returncode == 1, (out, err)
    assert f"pid {server.proc.pid} at {server.url}, since " in err, err
    assert err.strip().startswith("error 9999: "), err
    assert not marker.exists(), marker.read_text()
    owner = read_owner(store)
    assert owner is not None and owner.pid == server.proc.pid and owner.port == server.port
    assert httpx.get(f"{server.url}/healthz", timeout=60).status_code == 200


def test_cli_change_refused_when_the_owner_does_not_answer(
    store: Path, server: RunnerServer
) -> None:
    assert server.proc is not None
    before = registry_active(store)
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        r = cli(store, "--server-timeout", "1", "switch", NAME, "1.0.1", "--pid", "p001")
        listed = cli(store, "list", "--json")
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    assert r.returncode == 1, r.stdout
    owned = "error 9999: the store is owned by procvision-runner serve"
    assert r.stderr.startswith(owned), r.stderr
    assert f"(pid {server.proc.pid} at {server.url}, since " in r.stderr
    assert "did not answer in 1 s" in r.stderr
    assert registry_active(store) == before  # nothing changed behind the server's back
    assert listed.returncode == 0, listed.stderr  # queries work even then
    assert inspected_version(server) == "1.0.0"


HOLDER = textwrap.dedent(
    """
    import sys
    from procvision_runner.runner import Runner
    from procvision_runner.store import PackageManager, PackageStore

    with Runner() as runner:
        manager = PackageManager(PackageStore(sys.argv[1]), runner, role="holder")
        manager.start(["p001"])
        print("running", flush=True)
        sys.stdin.readline()
        runner.close()
        manager.close()
    """
)


@pytest.fixture
def holder(store: Path) -> Iterator[subprocess.Popen[str]]:
    """Another live process that runs p001's version (1.0.0) from the store."""
    bind(store, p001="1.0.0")
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 300)
        line = proc.stdout.readline() if ready else ""
        assert line.strip() == "running", f"holder not running: {line!r}"
        yield proc
    finally:
        if proc.poll() is None:
            proc.communicate("stop\n", timeout=120)
    assert proc.returncode == 0


def test_uninstall_of_a_version_another_process_runs_is_refused(
    store: Path, holder: subprocess.Popen[str]
) -> None:
    venv_python = store / "deployed" / NAME / "1.0.0" / "venv" / "bin" / "python"
    r = cli(store, "uninstall", NAME, "1.0.0", "--force")
    assert r.returncode == 1, r.stdout
    assert r.stderr.startswith(f"error 2007: {NAME} 1.0.0 is running in another process"), r.stderr
    assert f"pid {holder.pid} (holder, since " in r.stderr
    assert venv_python.exists()
    # and through a serving Runner, which runs it as well
    with RunnerServer(store, config=CONFIG) as srv:
        srv.wait_ready()
        r = cli(store, "uninstall", NAME, "1.0.0", "--force")
        assert r.returncode == 1, r.stdout
        assert r.stderr.startswith("error 2007: "), r.stderr
        assert f"pid {holder.pid} (holder" in r.stderr
        assert inspected_version(srv) == "1.0.0"
    assert venv_python.exists()
    listed = json.loads(cli_here(store, "list", "--json").stdout)
    assert listed["active"]["p001"]["version"] == "1.0.0"


def test_prune_keeps_a_version_another_process_runs(
    stations: Stations, store: Path, holder: subprocess.Popen[str]
) -> None:
    r = cli(store, "switch", NAME, "1.0.1", "--pid", "p001")  # the holder keeps running 1.0.0
    assert r.returncode == 0, r.stderr
    keep_one = store.parent / f"keep-one-{os.getpid()}.toml"
    keep_one.write_text("[store]\nkeep_versions = 1\n", encoding="utf-8")
    r = cli(store, "--config", str(keep_one), "install", str(stations.zips["1.0.2"]))
    assert r.returncode == 0, r.stderr
    listed = json.loads(cli_here(store, "list", "--json").stdout)
    # 1.0.2 is the one kept by count, 1.0.1 is bound, 1.0.0 runs in the holder: none pruned
    assert [p["version"] for p in listed["packages"]] == ["1.0.0", "1.0.1", "1.0.2"]
    assert (store / "deployed" / NAME / "1.0.0" / "venv" / "bin" / "python").exists()


def test_a_killed_server_does_not_block_the_next(store: Path) -> None:
    bind(store, p001="1.0.0")
    first = RunnerServer(store, config=CONFIG).start()
    try:
        first.wait_ready()
        assert first.proc is not None
        killed = first.proc.pid
        os.kill(killed, signal.SIGKILL)
        first.proc.wait(60)
    finally:
        first.stop()
    stale = read_owner(store)
    assert stale is not None and stale.pid == killed and not stale.is_alive()
    with RunnerServer(store, config=CONFIG) as second:
        second.wait_ready()
        assert second.proc is not None
        owner = live_owner(store)
        assert owner is not None and (owner.pid, owner.port) == (second.proc.pid, second.port)
        assert inspected_version(second) == "1.0.0"
    assert read_owner(store) is None  # an orderly stop gives the store up
