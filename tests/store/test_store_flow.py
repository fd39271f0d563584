"""The whole package lifecycle on real zips, real venvs and real worker processes.

One store holds algorithm-example 1.0.0 (flat zip) and 1.0.1 (zip nested under one folder).
The lifecycle is one scenario, one test: each step starts from the state the one before left
(activate, switch under load, rollback, uninstall refused then forced, a restart), so the steps
run in order inside it, and the test runs alone or in any order with the rest of the suite.
"""

from __future__ import annotations

import threading

import pytest
from helpers.package_zips import make_package_zip

from procvision_runner.config import RunnerConfig
from procvision_runner.runner import PackageKey, Runner
from procvision_runner.store import PackageManager, PackageStore, StoreConfig, StoreError

pytestmark = pytest.mark.slow
NAME = "algorithm-example"


@pytest.fixture
def world(tmp_path):
    base = tmp_path / "flow"
    zip100 = make_package_zip(base / "in" / "a-1.0.0.zip", "1.0.0")
    zip101 = make_package_zip(base / "in" / "a-1.0.1.zip", "1.0.1", nested=True)
    runner = Runner(RunnerConfig(warmup_calls=1))
    store = PackageStore(base / "store").open()
    manager = PackageManager(store, runner, config=StoreConfig(keep_versions=3))
    entries = [manager.install(zip100), manager.install(zip101)]
    yield {"manager": manager, "runner": runner, "store": store, "entries": entries, "base": base}
    runner.close()


def _version(result: dict) -> str:
    pre, exe = result["pre_execute"], result["execute"]
    assert pre["status"] == "OK", pre
    assert exe is not None and exe["status"] == "OK", exe
    assert pre["package"] == exe["package"], "one call answered by two versions"
    return str(exe["package"]["version"])


def _step_install_registers_both_layouts(world, frame) -> None:
    store: PackageStore = world["store"]
    listed = {(p["name"], p["version"]): p for p in world["manager"].list()}
    assert set(listed) == {(NAME, "1.0.0"), (NAME, "1.0.1")}
    for version in ("1.0.0", "1.0.1"):
        assert listed[(NAME, version)]["state"] == "deployed"
        assert listed[(NAME, version)]["supported_pids"] == ["p001", "p002"]
        assert store.venv_python(NAME, version).exists()
        assert store.zip_path(NAME, version).is_file()
    assert [e["info"]["version"] for e in world["entries"]] == ["1.0.0", "1.0.1"]
    # nothing of the temporary work is left
    assert not [p for p in (store.deployed / NAME).iterdir() if p.name.startswith(".")]
    assert list(store.tmp.iterdir()) == []
    # the venvs were built elsewhere and renamed: they must still work from their final place
    assert (store.package_dir(NAME, "1.0.1") / "algorithm_example" / "main.py").is_file()


def _step_install_existing_version_refused(world, frame) -> None:
    zip100 = world["base"] / "in" / "a-1.0.0.zip"
    with pytest.raises(StoreError) as err:
        world["manager"].install(zip100)
    assert err.value.error_code == "2005"
    assert "--replace" in err.value.message


def _step_activate_warms_then_routes(world, frame) -> None:
    manager: PackageManager = world["manager"]
    runner: Runner = world["runner"]
    out = manager.activate(NAME, "1.0.0", ["p001", "p002"])
    assert out["pids"] == ["p001", "p002"]
    assert runner.routes() == {
        "p001": PackageKey(NAME, "1.0.0"),
        "p002": PackageKey(NAME, "1.0.0"),
    }
    active = manager.active()
    assert {p: (b["name"], b["version"]) for p, b in active.items()} == {
        "p001": (NAME, "1.0.0"),
        "p002": (NAME, "1.0.0"),
    }
    mirror = world["store"].active_dir / "p001.json"
    assert '"version": "1.0.0"' in mirror.read_text()
    assert _version(runner.run_step("p001", 1, frame)) == "1.0.0"
    assert [p["state"] for p in manager.list()] == ["running", "deployed"]


def _step_activate_conflict_and_unsupported_pid(world, frame) -> None:
    manager: PackageManager = world["manager"]
    with pytest.raises(StoreError) as err:
        manager.activate(NAME, "1.0.1", ["p001"])
    assert err.value.error_code == "2006"
    with pytest.raises(StoreError) as err:
        manager.activate(NAME, "1.0.1", ["p999"])
    assert err.value.error_code == "1001"
    with pytest.raises(StoreError) as err:
        manager.activate(NAME, "9.9.9", ["p001"])
    assert err.value.error_code == "1006"
    audit = world["store"].audit.read()
    assert [a["error_code"] for a in audit[-3:]] == ["2006", "1001", "1006"]
    assert all(a["outcome"] == "refused" for a in audit[-3:])


def _step_switch_under_load_loses_no_call(world, frame) -> None:
    manager: PackageManager = world["manager"]
    runner: Runner = world["runner"]
    seen: list[str] = []
    errors: list[object] = []
    switched = threading.Event()

    def load() -> None:
        while not (switched.is_set() and len(seen) >= 200):
            try:
                seen.append(_version(runner.run_step("p001", 1, frame)))
            except BaseException as exc:
                errors.append(exc)
                return
            if len(seen) > 5000:
                return

    t = threading.Thread(target=load)
    t.start()
    try:
        while len(seen) < 20 and t.is_alive():
            threading.Event().wait(0.02)
        manager.switch(NAME, "1.0.1", ["p001", "p002"])
    finally:
        switched.set()
        t.join(timeout=300)
    assert not t.is_alive()
    assert errors == []
    assert len(seen) >= 200
    assert set(seen) == {"1.0.0", "1.0.1"}
    flip = seen.index("1.0.1")
    assert seen[:flip] == ["1.0.0"] * flip and set(seen[flip:]) == {"1.0.1"}
    assert runner.routes()["p002"] == PackageKey(NAME, "1.0.1")
    # the old version drained and stopped
    assert PackageKey(NAME, "1.0.0") not in {
        PackageKey(p["name"], p["version"]) for p in runner.packages()
    }


def _step_rollback_reactivates_previous(world, frame) -> None:
    manager: PackageManager = world["manager"]
    runner: Runner = world["runner"]
    out = manager.rollback("p001")
    assert (out["name"], out["version"]) == (NAME, "1.0.0")
    assert out["rolled_back_from"]["version"] == "1.0.1"
    assert _version(runner.run_step("p001", 1, frame)) == "1.0.0"
    assert _version(runner.run_step("p002", 1, frame)) == "1.0.1"
    assert manager.active()["p001"]["version"] == "1.0.0"


def _step_uninstall_refused_while_bound_then_forced(world, frame) -> None:
    manager: PackageManager = world["manager"]
    runner: Runner = world["runner"]
    store: PackageStore = world["store"]
    with pytest.raises(StoreError) as err:
        manager.uninstall(NAME, "1.0.0")
    assert err.value.error_code == "2007"
    assert store.package_dir(NAME, "1.0.0").is_dir()
    out = manager.uninstall(NAME, "1.0.0", force=True)
    assert out["deactivated"] == ["p001"]
    assert not store.package_dir(NAME, "1.0.0").exists()
    assert not store.zip_path(NAME, "1.0.0").exists()
    assert "p001" not in manager.active()
    assert "p001" not in runner.routes()
    assert not (store.active_dir / "p001.json").exists()
    assert [(p["version"], p["state"]) for p in manager.list()] == [("1.0.1", "running")]
    result = runner.run_step("p001", 1, frame)
    assert result["pre_execute"]["status"] == "ERROR"
    assert result["pre_execute"]["error_code"] == "1001"
    actions = [(a["action"], a["outcome"]) for a in store.audit.read()]
    assert ("uninstall", "refused") in actions and actions[-1] == ("uninstall", "ok")
    # the audit log survives the uninstall
    assert any(a["version"] == "1.0.0" and a["action"] == "install" for a in store.audit.read())


def _step_start_loads_active_mappings_in_a_new_runner(world, frame) -> None:
    store: PackageStore = world["store"]
    with Runner(RunnerConfig(warmup_calls=0)) as runner:
        manager = PackageManager(PackageStore(store.root).open(), runner)
        manager.start()
        assert runner.routes() == {"p002": PackageKey(NAME, "1.0.1")}
        assert _version(runner.run_step("p002", 2, frame)) == "1.0.1"


STEPS = (
    _step_install_registers_both_layouts,
    _step_install_existing_version_refused,
    _step_activate_warms_then_routes,
    _step_activate_conflict_and_unsupported_pid,
    _step_switch_under_load_loses_no_call,
    _step_rollback_reactivates_previous,
    _step_uninstall_refused_while_bound_then_forced,
    _step_start_loads_active_mappings_in_a_new_runner,
)


@pytest.mark.timeout(1800)
def test_package_lifecycle(world, example_frame) -> None:
    for step in STEPS:
        step(world, example_frame)
