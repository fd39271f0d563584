"""`procvision-runner` as a station uses it: real subprocesses, one real store per module.

Also: installs, switches and uninstalls from several processes at once (serialised by the
lock), and actions killed with SIGKILL at each named crash point of the store and at random
moments, each followed by a restart (reconcile).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from packaging_helpers import EXAMPLE, make_package_zip

from procvision_runner.store.crashpoints import ENV as CRASH_ENV
from procvision_runner.store.crashpoints import POINTS as CRASH_POINTS

pytestmark = pytest.mark.slow
NAME = "algorithm-example"
IMAGE = EXAMPLE / "images" / "ok_01.png"


def cli(
    store: Path, *args: str, timeout: float = 300, crash_at: str | None = None
) -> subprocess.CompletedProcess:
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
    return subprocess.Popen(
        [sys.executable, "-m", "procvision_runner.cli", "--store", str(store), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != CRASH_ENV},
    )


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("cli")
    zips = {v: make_package_zip(base / "in" / f"a-{v}.zip", v) for v in ("1.0.0", "1.0.1")}
    zips["1.0.2"] = make_package_zip(base / "in" / "a-1.0.2.zip", "1.0.2", nested=True)
    keep_one = base / "keep-one.toml"
    keep_one.write_text("[store]\nkeep_versions = 1\n")
    store = base / "store"
    r = cli(store, "install", str(zips["1.0.0"]))
    assert r.returncode == 0, r.stderr
    assert "installed algorithm-example 1.0.0" in r.stdout
    r = cli(store, "activate", NAME, "1.0.0", "--pid", "p001", "--pid", "p002")
    assert r.returncode == 0, r.stderr
    return {"store": store, "zips": zips, "base": base, "keep_one": keep_one}


def _inspect_version(store: Path) -> str:
    r = cli(store, "inspect", "--pid", "p001", "--step", "1", "--image", str(IMAGE), "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert set(result) >= {"pre_execute", "execute"}
    assert result["execute"]["status"] == "OK"
    return str(result["execute"]["package"]["version"])


def test_list_and_inspect(station) -> None:
    store = station["store"]
    r = cli(store, "list", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [(p["name"], p["version"], p["state"]) for p in doc["packages"]] == [
        (NAME, "1.0.0", "running")
    ]
    assert {pid: b["version"] for pid, b in doc["active"].items()} == {
        "p001": "1.0.0",
        "p002": "1.0.0",
    }
    assert json.loads((store / "active" / "p002.json").read_text())["version"] == "1.0.0"
    assert _inspect_version(store) == "1.0.0"
    r = cli(store, "inspect", "--pid", "p001", "--step", "2", "--image", str(IMAGE))
    assert r.returncode == 0, r.stderr
    assert "pre_execute: OK" in r.stdout and "execute: OK result_status=OK" in r.stdout


def test_inspect_many_images_and_steps_matches_ground_truth(station) -> None:
    truth = json.loads((EXAMPLE / "images" / "ground_truth.json").read_text())["images"]
    images = sorted(truth)
    args = ["inspect", "--pid", "p002", "--step", "1", "--step", "2", "--json"]
    for name in images:
        args += ["--image", str(EXAMPLE / "images" / name)]
    r = cli(station["store"], *args)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(lines) == 2 * len(images)
    verdicts = [line["execute"]["data"]["result_status"] for line in lines]
    expected = [truth[name][f"step{step}"] for name in images for step in (1, 2)]
    assert verdicts == expected


def test_usage_and_refusal_exit_codes(station, tmp_path: Path) -> None:
    store = station["store"]
    assert cli(store).returncode == 2
    assert cli(store, "activate", NAME, "1.0.0").returncode == 2  # --pid is required
    assert cli(store, "inspect", "--pid", "p001").returncode == 2
    r = cli(store, "uninstall", NAME, "1.0.0")
    assert r.returncode == 1
    assert r.stderr.startswith("error 2007: ")
    r = cli(store, "activate", NAME, "1.0.0", "--pid", "p404")
    assert (r.returncode, r.stderr.split(":")[0]) == (1, "error 1001")
    r = cli(store, "inspect", "--pid", "p001", "--step", "1", "--image", str(tmp_path / "no.png"))
    assert (r.returncode, r.stderr.split(":")[0]) == (1, "error 1002")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    r = cli(store, "install", str(bad))
    assert (r.returncode, r.stderr.split(":")[0]) == (1, "error 2001")
    cfg = tmp_path / "c.toml"
    cfg.write_text('[store]\nsignature_policy = "strict"\n')
    r = cli(store, "--config", str(cfg), "install", str(station["zips"]["1.0.1"]))
    assert r.returncode == 1 and "not signed" in r.stderr


def test_installs_from_several_processes_are_serialised(station) -> None:
    store = station["store"]
    z = station["zips"]["1.0.1"]
    procs = [spawn(store, "install", str(z)) for _ in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1, 1], outs
    refused = [err for p, (_out, err) in zip(procs, outs, strict=True) if p.returncode == 1]
    assert all(e.startswith("error 2005: ") and "already installed" in e for e in refused)
    pids = {p.pid for p in procs}
    audit = [
        a
        for a in map(json.loads, (store / "logs" / "audit.jsonl").read_text().splitlines())
        if a["action"] == "install" and a["process"] in pids
    ]
    assert [a["outcome"] for a in audit] == ["ok", "refused", "refused"]
    # the refusals waited for the lock: they are written after the successful install
    assert audit[0]["timestamp_ms"] <= audit[1]["timestamp_ms"] <= audit[2]["timestamp_ms"]
    doc = json.loads(cli(store, "list", "--json").stdout)
    assert [p["version"] for p in doc["packages"]] == ["1.0.0", "1.0.1"]


def _assert_consistent(store: Path) -> dict:
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


def _builds(store: Path) -> dict[str, int]:
    """version -> created_ns of each registered build (which build of a version is installed)."""
    registry = json.loads((store / "registry.json").read_text())
    return {p["version"]: p["created_ns"] for p in registry["packages"]}


def test_killed_at_each_named_point_then_restart(station) -> None:
    """SIGKILL exactly between two steps of install, replace, prune and uninstall; restart."""
    store, zips, keep_one = station["store"], station["zips"], str(station["keep_one"])
    z2, z1 = str(zips["1.0.2"]), str(zips["1.0.1"])
    # (crash point, command, what the registry holds after the restart: "before" = as before
    # the command, else the versions whose build changed / appeared / disappeared)
    steps = [
        ("install-after-extract", ["install", z2], "before"),
        ("install-after-venv", ["install", z2], "before"),
        ("install-after-marker", ["install", z2], "before"),
        ("install-after-rename", ["install", z2], "+1.0.2"),  # everything but the registry
        ("replace-after-trash", ["install", "--replace", z2], "before"),
        ("install-after-rename", ["install", "--replace", z2], "before"),
        ("install-after-registry", ["install", "--replace", z2], "~1.0.2"),
        ("uninstall-after-trash", ["uninstall", NAME, "1.0.2"], "before"),
        ("prune-after-trash", ["--config", keep_one, "install", "--replace", z1], "before"),
        ("prune-after-registry", ["--config", keep_one, "install", "--replace", z1], "-1.0.2"),
    ]
    seen = set()
    for point, args, expect in steps:
        before = _builds(store)
        r = cli(store, *args, crash_at=point)
        assert r.returncode == -signal.SIGKILL, (point, r.returncode, r.stderr)
        seen.add(point)
        doc = _assert_consistent(store)
        after = _builds(store)
        if expect == "before":
            assert after == before, point
        elif expect.startswith("+"):
            assert set(after) - set(before) == {expect[1:]} and before.items() <= after.items()
        elif expect.startswith("-"):
            assert set(before) - set(after) == {expect[1:]}, point
            assert after["1.0.1"] != before["1.0.1"]  # and the replace that pruned it stands
        else:
            assert set(after) == set(before) and after[expect[1:]] != before[expect[1:]], point
        assert {pid: b["version"] for pid, b in doc["active"].items()} == {
            "p001": "1.0.0",
            "p002": "1.0.0",
        }, point
        assert _inspect_version(store) == "1.0.0", point
    # an install killed at random moments (not only at the named points) then restarted
    rng = random.Random(int(os.environ.get("PROCVISION_KILL_SEED", "6")))
    for low, high in ((0.05, 0.6), (2.5, 6.0)):
        p = spawn(store, "install", z2)
        time.sleep(rng.uniform(low, high))
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=60)
        doc = _assert_consistent(store)
        assert {pid: b["version"] for pid, b in doc["active"].items()} == {
            "p001": "1.0.0",
            "p002": "1.0.0",
        }
    assert _inspect_version(store) == "1.0.0"
    r = cli(store, "install", z2)
    assert r.returncode == 0 or "already installed" in r.stderr, r.stderr
    before = _builds(store)
    assert "1.0.2" in before
    r = cli(store, "uninstall", NAME, "1.0.2", crash_at="uninstall-after-registry")
    assert r.returncode == -signal.SIGKILL, r.stderr
    seen.add("uninstall-after-registry")
    _assert_consistent(store)
    assert set(before) - set(_builds(store)) == {"1.0.2"}
    assert _inspect_version(store) == "1.0.0"
    assert seen == set(CRASH_POINTS)


def _serial_outcome(state: dict, op: tuple[str, ...]) -> str | None:
    """Apply one action to a model of the store; the error code it must give, None if it works."""
    installed, active = state["installed"], state["active"]
    kind, version = op[0], op[1]
    if kind == "install":
        if version in installed:
            return "2005"
        installed.add(version)
    elif kind == "switch":
        if version not in installed:
            return "1006"
        active.update({pid: version for pid in op[2:]})
    elif kind == "uninstall":
        if version not in installed:
            return "1006"
        if version in active.values():
            return "2007"
        installed.discard(version)
    return None


def test_install_switch_uninstall_from_several_processes_are_serialised(station) -> None:
    store, zips = station["store"], station["zips"]
    registry = json.loads((store / "registry.json").read_text())
    state = {
        "installed": {p["version"] for p in registry["packages"]},
        "active": {pid: b["version"] for pid, b in registry["active"].items()},
    }
    assert state == {"installed": {"1.0.0", "1.0.1"}, "active": {"p001": "1.0.0", "p002": "1.0.0"}}
    # switch and uninstall of 1.0.1 exclude each other; the uninstall of 1.0.2 works only if it
    # comes after its install: every serial order is allowed, but only one order at a time
    ops = {
        ("install", "1.0.2"): ["install", str(zips["1.0.2"])],
        ("switch", "1.0.1", "p002"): ["switch", NAME, "1.0.1", "--pid", "p002"],
        ("uninstall", "1.0.1"): ["uninstall", NAME, "1.0.1"],
        ("uninstall", "1.0.2"): ["uninstall", NAME, "1.0.2"],
    }
    procs = {op: spawn(store, *args) for op, args in ops.items()}
    outs = {op: p.communicate(timeout=600) for op, p in procs.items()}
    by_process = {p.pid: op for op, p in procs.items()}
    audit = [
        a
        for a in map(json.loads, (store / "logs" / "audit.jsonl").read_text().splitlines())
        if a["process"] in by_process and a["action"] in ("install", "switch", "uninstall")
    ]
    # one audit line per action, written under the lock at its end: the serial order
    order = [by_process[a["process"]] for a in audit]
    assert sorted(order) == sorted(ops), audit
    for op in order:
        want = _serial_outcome(state, op)
        code, (_out, err) = procs[op].returncode, outs[op]
        if want is None:
            assert code == 0, (op, order, err)
        else:
            assert code == 1 and err.startswith(f"error {want}: "), (op, order, want, err)
    doc = _assert_consistent(store)
    assert {(p["version"]) for p in doc["packages"]} == state["installed"]
    assert {pid: b["version"] for pid, b in doc["active"].items()} == state["active"]
    assert _inspect_version(store) == state["active"]["p001"] == "1.0.0"
    # back to where the next test starts: 1.0.0 and 1.0.1 installed, both pids on 1.0.0
    if "1.0.1" not in state["installed"]:
        assert cli(store, "install", str(zips["1.0.1"])).returncode == 0
    if state["active"]["p002"] != "1.0.0":
        assert cli(store, "switch", NAME, "1.0.0", "--pid", "p002").returncode == 0
    if "1.0.2" in state["installed"]:
        assert cli(store, "uninstall", NAME, "1.0.2").returncode == 0


def test_switch_rollback_deactivate_uninstall(station) -> None:
    store = station["store"]
    r = cli(store, "switch", NAME, "1.0.1", "--pid", "p001", "--pid", "p002")
    assert r.returncode == 0, r.stderr
    assert _inspect_version(store) == "1.0.1"
    r = cli(store, "rollback", "--pid", "p001")
    assert r.returncode == 0, r.stderr
    assert "back to algorithm-example 1.0.0" in r.stdout
    assert _inspect_version(store) == "1.0.0"
    assert cli(store, "deactivate", "--pid", "p002").returncode == 0
    r = cli(store, "uninstall", NAME, "1.0.1")
    assert r.returncode == 0, r.stderr
    r = cli(store, "uninstall", NAME, "1.0.0", "--force")
    assert r.returncode == 0, r.stderr
    assert "deactivated p001" in r.stdout
    doc = json.loads(cli(store, "list", "--json").stdout)
    assert doc["active"] == {}
    assert not (store / "active" / "p001.json").exists()
