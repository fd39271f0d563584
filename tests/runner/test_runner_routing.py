"""pid routing: unknown pids, conflicts, and a switch that drains calls routed before it."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from helpers.runner_kit import FAULTY, FRAME, ok, package_copy, wait_for

from procvision_runner import RunnerError


def test_routing_and_unknown_pid(make_runner: Any, tmp_path: Path) -> None:
    tracked = make_runner()
    runner = tracked.runner
    key = runner.load(FAULTY)
    calls = tracked.calls()
    result = runner.run_step("nope", 1, FRAME)
    assert result["execute"] is None
    assert result["pre_execute"]["error_code"] == "1001"
    assert tracked.calls() == calls  # no worker touched
    other = package_copy(tmp_path, "other", "faulty_algo:Faulty")
    with pytest.raises(RunnerError) as conflict:
        runner.load(other)
    assert conflict.value.error_code == "2006"
    key2 = runner.load(other, activate=False)
    runner.route(["f2"], key2)
    assert runner.routes() == {"f1": key, "f2": key2}
    assert runner.run_step("f2", 1, FRAME)["execute"]["package"]["name"] == "other"
    with pytest.raises(RunnerError):
        runner.route(["zzz"], key2)
    runner.route(["f1"], None)
    assert runner.execute("f1", 1, FRAME)["error_code"] == "1001"
    tracked.worker_pids()
    runner.unload(key2)
    assert runner.run_step("f2", 1, FRAME)["pre_execute"]["error_code"] == "1001"
    assert [p["name"] for p in runner.packages()] == ["faulty"]


@pytest.mark.slow
def test_call_routed_before_a_switch_is_answered_by_the_old_version(
    make_runner: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    import procvision_runner.calls as calls_module

    tracked = make_runner()
    runner = tracked.runner
    old_key = runner.load(FAULTY)
    new_root = package_copy(tmp_path, "faulty", "faulty_algo:Faulty")
    manifest = json.loads((new_root / "manifest.json").read_text())
    manifest["version"] = "2.0.0"
    (new_root / "manifest.json").write_text(json.dumps(manifest))
    new_key = runner.load(new_root, activate=False)
    old_pool = runner._pools[old_key]
    tracked.worker_pids()

    # Hold the caller between its route lookup and its worker acquire (parameter validation
    # sits in between), and switch + unload the old version exactly there.
    routed, release = threading.Event(), threading.Event()
    original = calls_module.validate_user_params

    def held(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "caller":
            routed.set()
            release.wait(30)
        return original(*args, **kwargs)

    monkeypatch.setattr(calls_module, "validate_user_params", held)
    answer: dict[str, Any] = {}
    caller = threading.Thread(
        target=lambda: answer.update(runner.execute("f1", 1, FRAME, user_params={"tag": "in"})),
        name="caller",
    )
    caller.start()
    assert routed.wait(30)

    def switch() -> None:
        runner.route(["f1", "f2"], new_key)
        runner.unload(old_key)

    switcher = threading.Thread(target=switch)
    switcher.start()
    assert wait_for(lambda: old_pool.state != "READY")  # the unload is draining (or done)
    release.set()
    caller.join(60)
    switcher.join(60)
    assert not caller.is_alive() and not switcher.is_alive()
    assert ok(answer)["data"]["tag"] == "in"
    assert answer["package"] == {"name": "faulty", "version": "1.0.0"}
    after = ok(runner.execute("f1", 1, FRAME))
    assert after["package"] == {"name": "faulty", "version": "2.0.0"}
    assert old_pool.state == "STOPPED"
