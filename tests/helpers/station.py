"""Real stores for the `procvision-runner` CLI tests: built once per module, copied per test.

Templates (each a real store made by the CLI from real zips):
  "1.0.0"          algorithm-example 1.0.0 installed and active on p001 and p002
  "1.0.0+1.0.1"    that, plus 1.0.1 installed (not active)
  "1.0.0+1.0.1+1.0.2"  that, plus 1.0.2 installed (not active)
Each test gets its own copy (`Stations.copy`), so no test depends on what another left. The
files under deployed/ (venvs and package files) are hard links into the template: the store
never writes a deployed file in place (installs build elsewhere and rename, removals unlink).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from helpers.package_zips import EXAMPLE, make_package_zip
from procvision_runner.store.crashpoints import ENV as CRASH_ENV

NAME = "algorithm-example"
VERSIONS = ("1.0.0", "1.0.1", "1.0.2")
IMAGE = EXAMPLE / "images" / "ok_01.png"


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
    r = cli(store, "inspect", "--pid", "p001", "--step", "1", "--image", str(IMAGE), "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert set(result) >= {"pre_execute", "execute"}
    assert result["execute"]["status"] == "OK"
    return str(result["execute"]["package"]["version"])


def assert_consistent(store: Path) -> dict:
    """Restart (open) the store and check registry, disk, zips and bindings agree."""
    r = cli(store, "list", "--json")  # opening the store is the restart: it reconciles
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


def _link_deployed(src: str, dst: str) -> None:
    if f"{os.sep}deployed{os.sep}" in src:
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


class Stations:
    """Zips of 1.0.0, 1.0.1 and 1.0.2 (nested) and the template stores, built on first use."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.zips = {v: make_package_zip(base / "in" / f"a-{v}.zip", v) for v in VERSIONS[:2]}
        self.zips["1.0.2"] = make_package_zip(base / "in" / "a-1.0.2.zip", "1.0.2", nested=True)
        self.keep_one = base / "keep-one.toml"
        self.keep_one.write_text("[store]\nkeep_versions = 1\n")
        self._templates: dict[str, Path] = {}

    def template(self, versions: str) -> Path:
        """The template store with `versions` ("1.0.0", "1.0.0+1.0.1", ...) installed."""
        if versions in self._templates:
            return self._templates[versions]
        wanted = versions.split("+")
        store = self.base / "templates" / versions
        if len(wanted) == 1:
            self._run(store, "install", str(self.zips[wanted[0]]))
            self._run(store, "activate", NAME, wanted[0], "--pid", "p001", "--pid", "p002")
        else:
            previous = self.template("+".join(wanted[:-1]))
            shutil.copytree(previous, store, symlinks=True, copy_function=_link_deployed)
            self._run(store, "install", str(self.zips[wanted[-1]]))
        self._templates[versions] = store
        return store

    def copy(self, versions: str, dest: Path) -> Path:
        """A private copy of a template store at `dest`."""
        shutil.copytree(self.template(versions), dest, symlinks=True, copy_function=_link_deployed)
        return dest

    @staticmethod
    def _run(store: Path, *args: str) -> None:
        r = cli(store, *args)
        if r.returncode != 0:
            raise RuntimeError(f"procvision-runner {' '.join(args)} failed: {r.stderr}")
