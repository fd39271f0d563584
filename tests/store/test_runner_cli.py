"""`procvision-runner` as a station uses it: real subprocesses on real stores.

Each test has a store of its own, copied from a template built once per run
(helpers/station.py). Also: installs, switches and uninstalls from several processes at once
(serialised by the lock). The crash points are in test_store_crashpoints.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.package_zips import EXAMPLE
from helpers.station import (
    IMAGE,
    NAME,
    Stations,
    assert_consistent,
    cli,
    cli_here,
    inspect_version,
    spawn,
)

pytestmark = pytest.mark.slow


def _station(stations: Stations, versions: str, tmp_path: Path) -> dict:
    store = stations.copy(versions, tmp_path / "store")
    return {"store": store, "zips": stations.zips, "keep_one": stations.keep_one}


@pytest.fixture
def station(stations: Stations, tmp_path: Path) -> dict:
    """A store of its own: 1.0.0 installed and active on p001 and p002."""
    return _station(stations, "1.0.0", tmp_path)


@pytest.fixture
def station_two(stations: Stations, tmp_path: Path) -> dict:
    """A store of its own: 1.0.0 active on p001 and p002, 1.0.1 installed."""
    return _station(stations, "1.0.0+1.0.1", tmp_path)


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
    assert inspect_version(store) == "1.0.0"
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
    r = cli(store, "install", str(bad))  # its steps first, the error line last
    assert (r.returncode, r.stderr.splitlines()[-1].split(":")[0]) == (1, "error 2001")
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
    last = [e.splitlines()[-1] for e in refused]  # after the steps the install reported
    assert all(e.startswith("error 2005: ") and "already installed" in e for e in last), refused
    pids = {p.pid for p in procs}
    audit = [
        a
        for a in map(json.loads, (store / "logs" / "audit.jsonl").read_text().splitlines())
        if a["action"] == "install" and a["process"] in pids
    ]
    assert [a["outcome"] for a in audit] == ["ok", "refused", "refused"]
    # the refusals waited for the lock: they are written after the successful install
    assert audit[0]["timestamp_ms"] <= audit[1]["timestamp_ms"] <= audit[2]["timestamp_ms"]
    doc = json.loads(cli_here(store, "list", "--json").stdout)
    assert [p["version"] for p in doc["packages"]] == ["1.0.0", "1.0.1"]


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


def test_install_switch_uninstall_from_several_processes_are_serialised(station_two) -> None:
    store, zips = station_two["store"], station_two["zips"]
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
    doc = assert_consistent(store)
    assert {(p["version"]) for p in doc["packages"]} == state["installed"]
    assert {pid: b["version"] for pid, b in doc["active"].items()} == state["active"]
    assert inspect_version(store) == state["active"]["p001"] == "1.0.0"


def test_switch_rollback_deactivate_uninstall(station_two) -> None:
    store = station_two["store"]
    r = cli(store, "switch", NAME, "1.0.1", "--pid", "p001", "--pid", "p002")
    assert r.returncode == 0, r.stderr
    assert inspect_version(store) == "1.0.1"
    r = cli(store, "rollback", "--pid", "p001")
    assert r.returncode == 0, r.stderr
    assert "back to algorithm-example 1.0.0" in r.stdout
    assert inspect_version(store) == "1.0.0"
    assert cli(store, "deactivate", "--pid", "p002").returncode == 0
    r = cli(store, "uninstall", NAME, "1.0.1")
    assert r.returncode == 0, r.stderr
    r = cli(store, "uninstall", NAME, "1.0.0", "--force")
    assert r.returncode == 0, r.stderr
    assert "deactivated p001" in r.stdout
    doc = json.loads(cli_here(store, "list", "--json").stdout)
    assert doc["active"] == {}
    assert not (store / "active" / "p001.json").exists()


def test_inspect_refuses_bad_json_options_with_1006(tmp_path: Path) -> None:
    base = ("inspect", "--pid", "p001", "--step", "1", "--image", str(IMAGE))
    params_file = tmp_path / "params.json"
    params_file.write_text("[1, 2]", encoding="utf-8")
    for extra, said in (
        (("--params", "{x"), "error 1006: --params: "),
        (("--params", f"@{params_file}"), "error 1006: --params must be a JSON object"),
        (("--params", f"@{tmp_path / 'missing.json'}"), "error 1006: --params: "),
        (("--guide-info", '{"a": 1}'), "error 1006: --guide-info must be a JSON list"),
    ):
        result = cli(tmp_path / "store", *base, *extra)
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith(said), result.stderr
