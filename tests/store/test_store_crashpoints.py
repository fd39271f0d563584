"""`procvision-runner` killed with SIGKILL at each named crash point of the store, then restarted.

One test per crash point, each on a store of its own (a copy of a template, helpers/station.py),
so each can run alone, in any order, and reports its point. Opening the store again is the
restart: it reconciles, and the registry, the disk, the zips and the bindings must agree, with
the pids still answered by 1.0.0. Also: an install killed at random moments.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
from helpers.station import NAME, Stations, assert_consistent, cli, inspect_version, spawn

from procvision_runner.store.crashpoints import POINTS as CRASH_POINTS

pytestmark = pytest.mark.slow
TWO, THREE = "1.0.0+1.0.1", "1.0.0+1.0.1+1.0.2"
INSTALL_2, REPLACE_2 = ("install", "{z2}"), ("install", "--replace", "{z2}")
PRUNE = ("--config", "{keep_one}", "install", "--replace", "{z1}")

# (crash point, command, template store, after the restart: versions added / removed / rebuilt)
CASES = [
    ("install-after-extract", INSTALL_2, TWO, {}),
    ("install-after-venv", INSTALL_2, TWO, {}),
    ("install-after-marker", INSTALL_2, TWO, {}),
    ("install-after-rename", INSTALL_2, TWO, {"added": "1.0.2"}),  # all but the registry
    ("replace-after-trash", REPLACE_2, THREE, {}),
    ("install-after-rename", REPLACE_2, THREE, {}),
    ("install-after-registry", REPLACE_2, THREE, {"rebuilt": "1.0.2"}),
    ("uninstall-after-trash", ("uninstall", NAME, "1.0.2"), THREE, {}),
    ("uninstall-after-registry", ("uninstall", NAME, "1.0.2"), THREE, {"removed": "1.0.2"}),
    ("prune-after-trash", PRUNE, THREE, {}),
    ("prune-after-registry", PRUNE, THREE, {"removed": "1.0.2", "rebuilt": "1.0.1"}),
]
IDS = [f"{point}:{' '.join(a for a in args if not a.startswith('{'))}" for point, args, *_ in CASES]


def _builds(store: Path) -> dict[str, int]:
    """version -> created_ns of each registered build (which build of a version is installed)."""
    registry = json.loads((store / "registry.json").read_text())
    return {p["version"]: p["created_ns"] for p in registry["packages"]}


def _still_on_100(doc: dict, store: Path) -> None:
    assert {pid: b["version"] for pid, b in doc["active"].items()} == {
        "p001": "1.0.0",
        "p002": "1.0.0",
    }
    assert inspect_version(store) == "1.0.0"


def test_every_crash_point_has_a_case() -> None:
    assert {point for point, *_ in CASES} == set(CRASH_POINTS)


@pytest.mark.parametrize(("point", "args", "template", "expect"), CASES, ids=IDS)
def test_killed_at_a_named_point_then_restart(
    stations: Stations, tmp_path: Path, point: str, args: tuple, template: str, expect: dict
) -> None:
    store = stations.copy(template, tmp_path / "store")
    names = {"z1": stations.zips["1.0.1"], "z2": stations.zips["1.0.2"]}
    names["keep_one"] = stations.keep_one
    command = [a.format(**names) for a in args]
    before = _builds(store)
    r = cli(store, *command, crash_at=point)
    assert r.returncode == -signal.SIGKILL, (point, r.returncode, r.stderr)
    doc = assert_consistent(store)
    after = _builds(store)
    added, removed = set(expect.get("added", "").split()), set(expect.get("removed", "").split())
    assert set(after) == (set(before) - removed) | added, (point, before, after)
    rebuilt = set(expect.get("rebuilt", "").split())
    for version in set(after) & set(before):
        assert (after[version] != before[version]) == (version in rebuilt), (point, version)
    _still_on_100(doc, store)


def test_install_killed_at_random_moments_then_restart(stations: Stations, tmp_path: Path) -> None:
    store = stations.copy(TWO, tmp_path / "store")
    z2 = str(stations.zips["1.0.2"])
    rng = random.Random(int(os.environ.get("PROCVISION_KILL_SEED", "6")))
    for low, high in ((0.05, 0.6), (2.5, 6.0)):
        p = spawn(store, "install", z2)
        time.sleep(rng.uniform(low, high))
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=60)
        doc = assert_consistent(store)
        _still_on_100(doc, store)
    r = cli(store, "install", z2)
    assert r.returncode == 0 or "already installed" in r.stderr, r.stderr
    assert "1.0.2" in _builds(store)
