"""Real stores for the `procvision-runner` CLI tests: built once per run, copied per test.

Templates (each a real store made by the CLI from real zips):
  "1.0.0"          algorithm-example 1.0.0 installed and active on p001 and p002
  "1.0.0+1.0.1"    that, plus 1.0.1 installed (not active)
  "1.0.0+1.0.1+1.0.2"  that, plus 1.0.2 installed (not active)
Each test gets its own copy (`Stations.copy`), so no test depends on what another left. The
files under deployed/ (venvs and package files) and zips/ are hard links into the template: the
store never writes those in place (installs build elsewhere and rename, removals unlink).
The zips and templates are built once per pytest run, under a file lock, in a directory the
xdist workers share (the `stations` fixture of tests/conftest.py): the templates are only read
(copied), so sharing them changes nothing a test sees.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from filelock import FileLock, Timeout

from helpers.package_zips import EXAMPLE, make_package_zip
from helpers.store_copy import link_copy
from procvision_runner.store.crashpoints import ENV as CRASH_ENV

NAME = "algorithm-example"
VERSIONS = ("1.0.0", "1.0.1", "1.0.2")
IMAGE = EXAMPLE / "images" / "ok_01.png"
BUILD_LOCK_TIMEOUT_S = 1200.0


def cli(
    store: Path, *args: str, timeout: float = 300, crash_at: str | None = None
) -> subprocess.CompletedProcess:
    """Run `procvision-runner --store STORE ARGS` (optionally killed at a crash point)."""
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "procvision_runner.cli", "--store", str(store), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def cli_here(store: Path, *args: str) -> subprocess.CompletedProcess:
    """`procvision-runner --store STORE ARGS` through its `main()` in this process.

    The same parsing, commands, output and exit status as `cli`, without a Python start and
    the Runner's imports: for the checks where the process boundary is not the point (a
    restart is opening the store again; an inspect runs its worker as a real process either
    way).
    """
    from procvision_runner.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["--store", str(store), *args])
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    return subprocess.CompletedProcess(
        ["procvision-runner", *args], code, out.getvalue(), err.getvalue()
    )


def spawn(store: Path, *args: str) -> subprocess.Popen:
    """Start `procvision-runner --store STORE ARGS` without waiting (the caller reaps it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "procvision_runner.cli", "--store", str(store), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != CRASH_ENV},
    )


def inspect_version(store: Path) -> str:
    """The version that answers p001 step 1 through `procvision-runner inspect`."""
    r = cli_here(store, "inspect", "--pid", "p001", "--step", "1", "--image", str(IMAGE), "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert set(result) >= {"pre_execute", "execute"}
    assert result["execute"]["status"] == "OK"
    return str(result["execute"]["package"]["version"])


def assert_consistent(store: Path) -> dict:
    """Restart (open) the store and check registry, disk, zips and bindings agree."""
    r = cli_here(store, "list", "--json")  # opening the store is the restart: it reconciles
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    registry = json.loads((store / "registry.json").read_text())
    assert json.loads((store / "registry.json.bak").read_text()) == registry
    on_disk = {(n.name, v.name) for n in (store / "deployed").iterdir() for v in n.iterdir()}
    assert all(not v.startswith(".") for _n, v in on_disk), on_disk
    registered = {(p["name"], p["version"]) for p in registry["packages"]}
    assert on_disk == registered
    assert all(p["state"] != "invalid" for p in registry["packages"])
    zips = {z.name for z in (store / "zips").iterdir()}
    assert zips == {f"{n}-{v}.zip" for n, v in registered}
    assert list((store / "tmp").iterdir()) == []
    assert sorted(f.name for f in (store / "active").iterdir()) == ["p001.json", "p002.json"]
    return doc


class Stations:
    """Zips of 1.0.0, 1.0.1 and 1.0.2 (nested) and the template stores, built on first use.

    Several processes may share one `base`: each build runs under `base/.build.lock` and is
    marked done only when complete, so a process killed mid-build leaves nothing half-used.
    With a `private` directory, a process that finds another one building a template builds
    its own copy there instead of waiting (its core would idle), and takes the shared ones
    that are done.
    """

    def __init__(
        self,
        base: Path,
        *,
        private: Path | None = None,
        zips: dict[str, Path] | None = None,
        keep_one: Path | None = None,
    ) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        # the deadline covers another process building all three templates (3 installs)
        self._lock = FileLock(str(base / ".build.lock"), timeout=BUILD_LOCK_TIMEOUT_S)
        self._private = private
        self._own: Stations | None = None
        if zips is not None and keep_one is not None:
            self.zips, self.keep_one = zips, keep_one
            return
        self.keep_one = base / "keep-one.toml"
        self.zips = {v: self._zip_path(v) for v in VERSIONS}
        if self.keep_one.exists() and all(z.exists() for z in self.zips.values()):
            # all made already (each is renamed into place when complete): no lock, since
            # another process may hold it for a template build that takes much longer
            return
        with self._lock:  # a zip takes a second or two: waiting for it is fine
            self.zips = {v: self._zip(v, nested=v == "1.0.2") for v in VERSIONS}
            if not self.keep_one.exists():
                part = self.keep_one.with_name("keep-one.toml.part")
                part.write_text("[store]\nkeep_versions = 1\n")
                part.replace(self.keep_one)

    def _zip_path(self, version: str) -> Path:
        return self.base / "in" / f"a-{version}.zip"

    def _zip(self, version: str, *, nested: bool) -> Path:
        out = self._zip_path(version)
        if not out.exists():
            part = make_package_zip(out.with_name(f"{out.name}.part"), version, nested=nested)
            part.replace(out)
        return out

    def template(self, versions: str) -> Path:
        """The template store with `versions` ("1.0.0", "1.0.0+1.0.1", ...) installed."""
        store = self.base / "templates" / versions
        done = store.with_name(f"{versions}.done")
        if done.exists():
            return store
        try:
            # reentrant: the recursive call below holds it once more
            self._lock.acquire(timeout=0 if self._private is not None else BUILD_LOCK_TIMEOUT_S)
        except Timeout:  # another process is building: build our own rather than wait
            return self._own_stations().template(versions)
        try:
            if done.exists():
                return store
            if store.exists():  # a build that did not finish
                shutil.rmtree(store)
            wanted = versions.split("+")
            if len(wanted) == 1:
                self._run(store, "install", str(self.zips[wanted[0]]))
                self._run(store, "activate", NAME, wanted[0], "--pid", "p001", "--pid", "p002")
            else:
                previous = self.template("+".join(wanted[:-1]))
                link_copy(previous, store)
                self._run(store, "install", str(self.zips[wanted[-1]]))
            done.touch()
        finally:
            self._lock.release()
        return store

    def _own_stations(self) -> Stations:
        assert self._private is not None
        if self._own is None:
            self._own = Stations(self._private, zips=self.zips, keep_one=self.keep_one)
        return self._own

    def copy(self, versions: str, dest: Path) -> Path:
        """A private copy of a template store at `dest`."""
        return link_copy(self.template(versions), dest)

    @staticmethod
    def _run(store: Path, *args: str) -> None:
        r = cli_here(store, *args)  # building a template checks nothing: no process of its own
        if r.returncode != 0:
            raise RuntimeError(f"procvision-runner {' '.join(args)} failed: {r.stderr}")
