"""Adapter start-up and exit as a real subprocess: discovery, start failures, teardown once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from helpers.adapter_process import AdapterProcess

from procvision_algorithm_sdk import protocol
from procvision_algorithm_sdk.errors import ALGORITHM_EXCEPTION, MODEL_NOT_FOUND

PROBE = "algos.adapter.probe:Probe"


def _start_failure(tmp_path: Path, entry: str | None, **kwargs: object) -> tuple[dict, int, str]:
    with AdapterProcess(tmp_path, entry, expect_hello=False, **kwargs) as adapter:  # type: ignore[arg-type]
        frame = adapter.recv()
        adapter.recv_eof()
        return frame, adapter.wait(), adapter.stderr()


def test_import_failure_is_1003_exit_2_and_never_a_hello(tmp_path: Path) -> None:
    frame, code, stderr = _start_failure(tmp_path, "algos.adapter.broken_import:Broken")
    assert code == 2
    assert (frame["type"], frame["error_code"]) == ("error", MODEL_NOT_FOUND)
    assert "definitely_not_an_installed_module_xyz" in frame["message"]
    assert "ModuleNotFoundError" in frame["message"]
    assert "Traceback (most recent call last)" in stderr


def test_constructor_failure_is_1003_exit_2(tmp_path: Path) -> None:
    frame, code, stderr = _start_failure(tmp_path, PROBE, env={"PROBE_CTOR_FAIL": "1"})
    assert code == 2 and frame["error_code"] == MODEL_NOT_FOUND
    assert "RuntimeError: constructor refused" in frame["message"]
    assert "Traceback (most recent call last)" in stderr


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("algos.adapter.probe:NoSuchClass", "NoSuchClass"),
        ("not an entry", "module.path:ClassName"),
        (None, "no entry point"),
    ],
)
def test_bad_or_missing_entry_is_1003_exit_2(tmp_path: Path, entry: str | None, words: str) -> None:
    frame, code, _ = _start_failure(tmp_path, entry, cwd=tmp_path)
    assert code == 2 and frame["error_code"] == MODEL_NOT_FOUND
    assert words in frame["message"]


def _manifest(directory: Path, entry: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifest.json").write_text(
        json.dumps(
            {
                "name": "probe",
                "version": "1.0.0",
                "entry_point": entry,
                "supported_pids": ["P1", "P2"],
            }
        ),
        encoding="utf-8",
    )


@pytest.mark.slow
def test_entry_discovery_order(tmp_path: Path) -> None:
    project = tmp_path / "project"
    _manifest(project, PROBE)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.procvision.algorithm]\n'
        'entry_point = "algos.adapter.plain:Plain"\n',
        encoding="utf-8",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def entry_of(**kwargs: object) -> str:
        with AdapterProcess(tmp_path, **kwargs) as adapter:  # type: ignore[arg-type]
            assert adapter.hello is not None
            return str(adapter.hello["entry_point"])

    # --entry beats the environment variable, which beats manifest.json
    env = {"PROC_ENTRY_POINT": "algos.adapter.plain:Plain"}
    assert entry_of(entry=PROBE, env=env, cwd=project) == PROBE
    assert entry_of(entry=None, env=env, cwd=project) == "algos.adapter.plain:Plain"
    # manifest.json in the cwd beats pyproject.toml
    assert entry_of(entry=None, cwd=project) == PROBE
    # PROC_ALGO_ROOT's manifest.json, from another cwd
    assert entry_of(entry=None, cwd=elsewhere, env={"PROC_ALGO_ROOT": str(project)}) == PROBE
    # pyproject.toml when there is no manifest
    (project / "manifest.json").unlink()
    assert entry_of(entry=None, cwd=project) == "algos.adapter.plain:Plain"


def test_manifest_root_is_importable(tmp_path: Path) -> None:
    package = tmp_path / "pkg" / "my_algo_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "from algos.adapter.probe import Probe as Algo\n", encoding="utf-8"
    )
    _manifest(tmp_path / "pkg", "my_algo_pkg:Algo")
    cwd = tmp_path / "somewhere"
    cwd.mkdir()
    with AdapterProcess(
        tmp_path, None, cwd=cwd, env={"PROC_ALGO_ROOT": str(tmp_path / "pkg")}
    ) as adapter:
        assert adapter.call("info")["data"]["info"]["name"] == "probe"


def test_a_class_that_is_not_a_base_algorithm_runs_anyway(tmp_path: Path) -> None:
    with AdapterProcess(tmp_path, "algos.adapter.plain:Plain") as adapter:
        hello = adapter.hello
        assert hello is not None and hello["base_algorithm"] is False
        assert "execute" not in hello["capabilities"] and "pre" in hello["capabilities"]
        # Only the methods the class has are advertised; an explicit call for one it lacks
        # is an error frame, never a silent OK.
        for hook in ("setup", "teardown", "reset", "on_step_start", "on_step_finish"):
            assert hook not in hello["capabilities"]
        assert adapter.call("info")["data"]["info"]["name"] == "plain"
        for phase, method in (
            ("setup", "setup"),
            ("reset", "reset"),
            ("on_step_start", "on_step_start"),
            ("on_step_finish", "on_step_finish"),
            ("teardown", "teardown"),
        ):
            frame = adapter.step(phase, 1, "s9")
            assert (frame["type"], frame["error_code"]) == ("error", ALGORITHM_EXCEPTION)
            assert frame["message"] == f"does not implement {method}"
        pre = adapter.step("pre", 1, "s9")
        assert (pre["status"], pre["message"]) == ("OK", "plain pre 1 s9")
        missing = adapter.step("execute", 1, "s9")
        assert missing["type"] == "error" and missing["error_code"] == ALGORITHM_EXCEPTION
        assert missing["message"] == "does not implement execute"
        # Implicit calls of missing hooks stay no-ops: the pre above ran without them.
        assert adapter.step("pre", 2, "s9")["status"] == "OK"


def test_shutdown_runs_teardown_once_and_exits_0(tmp_path: Path) -> None:
    with AdapterProcess(tmp_path) as adapter:
        adapter.step("execute", 1)
        adapter.send(protocol.shutdown("bye"))
        ack = adapter.recv()
        assert (ack["type"], ack["status"], ack["request_id"]) == ("shutdown", "OK", "bye")
        adapter.recv_eof()
        assert adapter.wait() == 0
        assert adapter.log_lines().count("teardown") == 1
        assert adapter.log_lines()[-1] == "teardown"


def test_shutdown_after_an_explicit_teardown_does_not_repeat_it(tmp_path: Path) -> None:
    with AdapterProcess(tmp_path) as adapter:
        assert adapter.call("teardown")["data"]["ran"] is True
        adapter.send(protocol.shutdown("bye"))
        assert adapter.recv()["status"] == "OK"
        assert adapter.wait() == 0
        assert adapter.log_lines() == ["init", "teardown"]


def test_stdin_eof_runs_teardown_once_and_exits_0(tmp_path: Path) -> None:
    with AdapterProcess(tmp_path) as adapter:
        adapter.step("pre", 1)
        adapter.close_stdin()
        adapter.recv_eof()
        assert adapter.wait() == 0
        assert adapter.log_lines().count("teardown") == 1


def test_sigterm_runs_teardown_once_and_exits_0(tmp_path: Path) -> None:
    with AdapterProcess(tmp_path) as adapter:
        adapter.call("info")
        adapter.terminate()
        adapter.recv_eof()
        assert adapter.wait() == 0
        assert adapter.log_lines() == ["init", "setup", "teardown"]


@pytest.mark.slow
def test_sigterm_during_a_call_lets_it_finish_then_tears_down(tmp_path: Path) -> None:
    with AdapterProcess(tmp_path) as adapter:
        adapter.send(
            protocol.call(
                "slow",
                "execute",
                step_index=1,
                session={"id": "s"},
                user_params={"mode": "sleep", "seconds": 1},
            )
        )
        adapter.ping()  # the call is running now
        adapter.terminate()
        adapter.terminate()  # a second signal changes nothing
        result = adapter.recv()
        assert (result["request_id"], result["status"]) == ("slow", "OK")
        adapter.recv_eof()
        assert adapter.wait() == 0
        assert adapter.log_lines().count("teardown") == 1
        assert adapter.log_lines()[-1] == "teardown"


def test_runner_heartbeat_settings_make_a_silent_runner_count_as_lost(tmp_path: Path) -> None:
    with AdapterProcess(tmp_path) as adapter:
        adapter.send(protocol.hello_from_runner("test", 50, 50))
        adapter.ping()
        # No more frames: after 3 intervals + grace without a frame the worker leaves.
        adapter.recv_eof()
        assert adapter.wait() == 0
        assert adapter.log_lines().count("teardown") == 1
        assert "no frame for" in adapter.stderr()


@pytest.mark.slow
def test_pings_keep_a_heartbeat_worker_alive(tmp_path: Path) -> None:
    with AdapterProcess(tmp_path) as adapter:
        adapter.send(protocol.hello_from_runner("test", 100, 100))
        for _ in range(10):  # 1 s of pings, well past the 0.4 s limit
            adapter.ping()
            time.sleep(0.1)
        assert adapter.proc.poll() is None
        assert adapter.call("info")["status"] == "OK"


def _wait_for_log(adapter: AdapterProcess, words: str, deadline_s: float = 20.0) -> None:
    """Wait until the worker's stderr shows `words`; fail if it exits or the deadline passes."""
    end = time.monotonic() + deadline_s
    while words not in adapter.stderr():
        assert adapter.proc.poll() is None, f"worker exited; stderr:\n{adapter.stderr()}"
        assert time.monotonic() < end, f"no {words!r} within {deadline_s} s:\n{adapter.stderr()}"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_later_hello_with_heartbeat_0_disarms_the_watchdog_and_another_rearms_it(
    tmp_path: Path,
) -> None:
    with AdapterProcess(tmp_path) as adapter:
        adapter.send(protocol.hello_from_runner("test", 5000, 2000))
        adapter.ping()
        # The later hello replaces the settings: interval 0 means no watchdog, not a 0 s limit.
        adapter.send(protocol.hello_from_runner("test", 0, 0))
        _wait_for_log(adapter, "heartbeat watchdog disarmed")
        adapter.ping()
        assert adapter.call("info")["status"] == "OK"
        assert adapter.proc.poll() is None
        adapter.send(protocol.hello_from_runner("test", 50, 50))
        adapter.recv_eof()  # silent again: 3 intervals + grace later the Runner counts as lost
        assert adapter.wait() == 0
        assert adapter.log_lines().count("teardown") == 1
        assert "no frame for" in adapter.stderr()
