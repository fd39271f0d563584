"""The adapter driven as a real subprocess with real frames: calls, sessions, hooks, results."""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.adapter_process import AdapterProcess

from procvision_algorithm_sdk import protocol
from procvision_algorithm_sdk.errors import (
    ALGORITHM_EXCEPTION,
    COORDINATE_INVALID,
    GPU_OOM,
    INVALID_RESULT,
    PROTOCOL_ERROR,
)
from procvision_algorithm_sdk.segment import segment_name_for_id
from procvision_algorithm_sdk.shared_memory import (
    dev_clear_shared_memory,
    write_image_array_to_shared_memory,
)


@pytest.fixture
def adapter(tmp_path: Path) -> Iterator[AdapterProcess]:
    with AdapterProcess(tmp_path) as proc:
        yield proc


def test_hello_comes_first_with_versions_and_capabilities(adapter: AdapterProcess) -> None:
    hello = adapter.hello
    assert hello is not None
    assert hello["sdk_version"] and hello["protocol_version"] == protocol.PROTOCOL_VERSION
    assert set(protocol.CAPABILITIES) <= set(hello["capabilities"])
    assert hello["worker_pid"] == adapter.proc.pid
    assert hello["base_algorithm"] is True
    # The algorithm module printed and wrote to fd 1 at import: that went to stderr, and the
    # hello (sent after the import) is intact.
    assert "probe: imported (print at import time)" in adapter.stderr()
    assert "raw write to fd 1 at import time" in adapter.stderr()
    assert adapter.log_lines() == ["init"]  # constructed before hello, setup not yet run


@pytest.mark.slow
def test_ping_is_answered_during_a_long_execute_and_a_second_call_is_refused(
    adapter: AdapterProcess,
) -> None:
    adapter.send(
        protocol.call(
            "long",
            "execute",
            step_index=1,
            pid="P1",
            session={"id": "s"},
            user_params={"mode": "sleep", "seconds": 3},
        )
    )
    adapter.send(protocol.ping("during"))
    adapter.send(protocol.call("second", "info"))
    pong = adapter.recv()
    busy = adapter.recv()
    result = adapter.recv(timeout=30)
    assert (pong["type"], pong["request_id"]) == ("pong", "during")
    assert busy["type"] == "error" and busy["request_id"] == "second"
    assert busy["busy"] is True and busy["error_code"] == PROTOCOL_ERROR
    assert "busy" in busy["message"]
    assert (result["type"], result["request_id"], result["status"]) == ("result", "long", "OK")
    assert result["timings"]["algorithm_ms"] >= 3000
    # Not queued: the refused call never ran; the next call is accepted.
    assert adapter.call("info")["status"] == "OK"
    assert adapter.log_lines().count("setup") == 1


def test_every_phase(adapter: AdapterProcess) -> None:
    setup = adapter.call("setup")
    assert (setup["status"], setup["data"]["ran"], setup["data"]["phase"]) == ("OK", True, "setup")
    assert adapter.call("setup")["data"]["ran"] is False

    info = adapter.call("info")
    assert info["data"]["info"]["supported_pids"] == ["P1", "P2"]

    started = adapter.step("on_step_start", 1)
    assert (started["status"], started["data"]["ran"]) == ("OK", True)
    pre = adapter.step("pre", 1)
    assert (pre["status"], pre["message"], pre["data"]["step_index"]) == ("OK", "prepared", 1)
    assert pre["data"]["calibration_rects"] == []
    execute = adapter.step("execute", 1)
    assert execute["status"] == "OK" and execute["data"]["result_status"] == "OK"
    assert execute["debug"] == {"mode": "ok"}
    # The explicit on_step_start handed the hooks to the host: execute finished nothing, the
    # explicit on_step_finish runs the hook (once).
    finished = adapter.step("on_step_finish", 1)
    assert (finished["status"], finished["data"]["ran"]) == ("OK", True)

    reset = adapter.step("reset", 0)
    assert reset["status"] == "OK"
    assert reset["session_delta"] == {"set": {}, "deleted": ["counter", "pre_1"]}

    teardown = adapter.call("teardown")
    assert (teardown["status"], teardown["data"]["ran"]) == ("OK", True)
    assert adapter.call("teardown")["data"]["ran"] is False
    # Window closed then reopened (adapter-era host): setup runs again, the worker serves on.
    reopened = adapter.call("setup")
    assert (reopened["status"], reopened["data"]["ran"]) == ("OK", True)
    assert adapter.call("info")["status"] == "OK"
    adapter.send(protocol.shutdown("bye"))
    assert adapter.recv()["status"] == "OK"
    assert adapter.wait() == 0
    assert adapter.log_lines() == [
        "init",
        "setup",
        "on_step_start s1 1 PC",
        "on_step_finish s1 1 OK",
        "reset s1",
        "teardown",
        "setup",
        "teardown",  # at exit, because setup ran again
    ]
    for frame in (setup, info, pre, execute, reset, teardown):
        assert set(frame) >= {
            "request_id",
            "timestamp_ms",
            "status",
            "message",
            "error_code",
            "data",
            "debug",
            "diagnostics",
            "timings",
            "session_delta",
            "retryable",
            "restart_worker",
        }
        assert {"algorithm_ms", "hooks_ms"} <= set(frame["timings"])


def test_fields_at_the_top_level_work_and_data_wins(adapter: AdapterProcess) -> None:
    adapter.send(
        {
            "type": "call",
            "request_id": "top",
            "phase": "pre",
            "step_index": 4,
            "pid": "P2",
            "session": {"id": "flat"},
            "user_params": {},
            "data": {"step_index": 5},
        }
    )
    frame = adapter.recv()
    assert frame["status"] == "OK" and frame["data"]["step_index"] == 5
    assert frame["session_delta"]["set"]["pre_5"] == {"pid": "P2", "seen": True}


def test_session_state_lives_in_the_worker_across_calls(adapter: AdapterProcess) -> None:
    pre = adapter.step("pre", 1, "A")
    assert pre["session_delta"] == {
        "set": {"counter": 1, "pre_1": {"pid": "P1", "seen": True}},
        "deleted": [],
    }
    execute = adapter.step("execute", 1, "A")
    assert execute["data"]["from_pre"] == {"pid": "P1", "seen": True}
    assert execute["session_delta"] == {"set": {}, "deleted": []}
    assert adapter.step("pre", 2, "A")["session_delta"]["set"]["counter"] == 2
    # another session does not see A's state
    other = adapter.step("execute", 1, "B")
    assert other["data"]["from_pre"] is None and other["session_id"] == "B"
    deleted = adapter.step("execute", 2, "A", user_params={"mode": "delete"})
    assert deleted["session_delta"] == {"set": {}, "deleted": ["counter"]}


def test_a_call_can_restore_a_session_after_a_restart(adapter: AdapterProcess) -> None:
    state = {"counter": 41, "pre_3": {"pid": "P9", "seen": True}}
    frame = adapter.step("execute", 3, "restored", session_state=state)
    assert frame["data"]["from_pre"] == {"pid": "P9", "seen": True}
    assert frame["data"]["counter"] == 41
    assert frame["session_delta"] == {"set": {}, "deleted": []}  # restoring is not a change
    assert adapter.step("pre", 4, "restored")["session_delta"]["set"]["counter"] == 42


def test_cached_sessions_are_bounded_least_recently_used_dropped(tmp_path: Path) -> None:
    with AdapterProcess(tmp_path, env={"PROC_SESSION_CACHE": "2"}) as adapter:
        for session_id in ("a", "b"):
            adapter.step("pre", 1, session_id)
        adapter.step("pre", 2, "a")  # a is now the most recent
        adapter.step("pre", 1, "c")  # drops b
        assert adapter.step("pre", 3, "a")["session_delta"]["set"]["counter"] == 3
        assert adapter.step("pre", 2, "b")["session_delta"]["set"]["counter"] == 1


def test_step_hooks_run_exactly_once_per_step(adapter: AdapterProcess) -> None:
    adapter.step("pre", 1)
    adapter.step("execute", 1)
    adapter.step("execute", 2)  # execute without pre: starts and finishes the step
    pre_error = adapter.step("pre", 4, user_params={"mode": "pre_error"})
    assert (pre_error["status"], pre_error["error_code"]) == ("ERROR", "1003")
    assert pre_error["message"] == "reference missing"
    adapter.step("pre", 1, "other")
    adapter.step("pre", 1, "other")  # a retried pre does not start the step again
    adapter.step("execute", 1, "other")
    assert adapter.log_lines() == [
        "init",
        "setup",
        "on_step_start s1 1 PC",
        "on_step_finish s1 1 OK",
        "on_step_start s1 2 PC",
        "on_step_finish s1 2 OK",
        "on_step_start s1 4 PC",
        "on_step_finish s1 4 ERROR",
        "on_step_start other 1 PC",
        "on_step_finish other 1 OK",
    ]


def test_explicit_hooks_hand_the_hooks_to_the_host(adapter: AdapterProcess) -> None:
    adapter.step("pre", 1)  # implicit: starts step 1
    # The first explicit hook call switches to host-driven hooks; a step already started
    # implicitly is not started twice.
    assert adapter.step("on_step_start", 1)["data"]["ran"] is False
    assert adapter.step("on_step_start", 3)["data"]["ran"] is True
    assert adapter.step("on_step_start", 3)["data"]["ran"] is True  # each host call runs once
    adapter.step("pre", 3)
    adapter.step("execute", 3)  # no implicit hooks any more
    assert adapter.step("on_step_finish", 3)["data"]["ran"] is True
    finish = adapter.step("on_step_finish", 5, result={"status": "ERROR", "message": "skipped"})
    assert finish["data"]["ran"] is True
    adapter.step("execute", 6, "other")
    assert adapter.log_lines() == [
        "init",
        "setup",
        "on_step_start s1 1 PC",
        "on_step_start s1 3 PC",
        "on_step_start s1 3 PC",
        "on_step_finish s1 3 OK",
        "on_step_finish s1 5 ERROR",
    ]


def test_a_failing_step_start_hook_fails_the_call_and_finishes_the_step(
    adapter: AdapterProcess,
) -> None:
    adapter.step("pre", 1, user_params={"mode": "set_hook_failure", "hook": "start"})
    adapter.step("execute", 1)
    frame = adapter.step("pre", 2)
    assert (frame["status"], frame["error_code"], frame["retryable"]) == (
        "ERROR",
        ALGORITHM_EXCEPTION,
        True,
    )
    assert "on_step_start raised RecoverableError" in frame["message"]
    assert adapter.log_lines()[-2:] == ["on_step_start s1 2 PC", "on_step_finish s1 2 ERROR"]


def test_stdout_pollution_never_reaches_the_frames(adapter: AdapterProcess) -> None:
    frame = adapter.step("execute", 1, user_params={"mode": "pollute"})
    assert frame["status"] == "OK"
    assert frame["data"]["stdin"] == ""  # algorithm code reading stdin gets EOF
    adapter.ping()
    assert adapter.step("pre", 2)["status"] == "OK"
    stderr = adapter.stderr()
    for text in (
        "polluting with print",
        "polluting with sys.stdout.write",
        "junk polluting with os.write(1)",
        "polluting with C printf",
    ):
        assert text in stderr
    assert '"message": "third-party logging line", "logger": "thirdparty.lib"' in stderr


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (struct.pack(">I", 0), "zero length"),
        (struct.pack(">I", 3) + b"\xff\xfe\xfd", "UTF-8"),
        (struct.pack(">I", 5) + b"{nope", "JSON"),
        (struct.pack(">I", 6) + b"[1,2] ", "object"),
    ],
)
def test_malformed_frames_get_1010_and_the_worker_stays_alive(
    adapter: AdapterProcess, raw: bytes, words: str
) -> None:
    adapter.send_raw(raw)
    frame = adapter.recv()
    assert (frame["type"], frame["error_code"], frame["request_id"]) == (
        "error",
        PROTOCOL_ERROR,
        None,
    )
    assert words in frame["message"]
    adapter.ping()
    assert adapter.step("pre", 1)["status"] == "OK"


def test_unknown_messages_and_phases_get_1010(adapter: AdapterProcess) -> None:
    adapter.send({"type": "dance", "request_id": "d"})
    frame = adapter.recv()
    assert (frame["type"], frame["request_id"], frame["error_code"]) == ("error", "d", "1010")
    unknown = adapter.call("fly")
    assert unknown["error_code"] == PROTOCOL_ERROR and "unknown phase" in unknown["message"]
    for phase in ([], {}, ["info"], 5):
        adapter.send({"type": "call", "request_id": "p", "phase": phase})
        frame = adapter.recv()
        assert (frame["type"], frame["request_id"], frame["error_code"]) == ("error", "p", "1010")
        assert "unknown phase" in frame["message"]
    no_step = adapter.call("pre", pid="P1")
    assert no_step["error_code"] == PROTOCOL_ERROR and "step_index" in no_step["message"]
    adapter.ping()


def test_an_oversized_frame_gets_1010_then_the_worker_exits(adapter: AdapterProcess) -> None:
    adapter.send_raw(struct.pack(">I", protocol.MAX_FRAME_BYTES + 1))
    frame = adapter.recv()
    assert frame["type"] == "error" and frame["error_code"] == PROTOCOL_ERROR
    assert "resynchronised" in frame["message"]
    adapter.recv_eof()
    assert adapter.wait() == 3
    assert adapter.log_lines().count("teardown") == 1


@pytest.mark.parametrize(
    ("error", "code", "retryable", "restart"),
    [
        ("RecoverableError", ALGORITHM_EXCEPTION, True, False),
        ("FatalError", ALGORITHM_EXCEPTION, False, True),
        ("GPUOutOfMemoryError", GPU_OOM, False, False),
        ("ProgramError", ALGORITHM_EXCEPTION, False, False),
        ("ValueError", ALGORITHM_EXCEPTION, False, False),
    ],
)
def test_exceptions_become_error_results(
    adapter: AdapterProcess, error: str, code: str, retryable: bool, restart: bool
) -> None:
    frame = adapter.step("execute", 1, user_params={"mode": "raise", "error": error})
    assert frame["type"] == "result" and frame["status"] == "ERROR"
    assert (frame["error_code"], frame["retryable"], frame["restart_worker"]) == (
        code,
        retryable,
        restart,
    )
    assert f"execute raised {error}: requested {error}" == frame["message"]
    assert frame["diagnostics"] == {"execute_calls": 1}
    stderr = adapter.stderr()
    assert "Traceback (most recent call last)" in stderr and f"requested {error}" in stderr
    assert adapter.log_lines()[-1] == "on_step_finish s1 1 ERROR"
    adapter.ping()
    assert adapter.step("pre", 2)["status"] == "OK"


@pytest.mark.parametrize(
    ("error", "code", "retryable", "restart"),
    [
        ("", "1005", True, False),  # a bare ProcVisionError: retryable because 1005 is
        ("", "1003", False, False),
        ("RecoverableError", "1003", True, False),  # the class says so, whatever the code
        ("FatalError", "1005", True, True),
        ("GPUOutOfMemoryError", "1004", False, False),
    ],
)
def test_retryable_comes_from_the_exception_or_the_code_table(
    adapter: AdapterProcess, error: str, code: str, retryable: bool, restart: bool
) -> None:
    frame = adapter.step(
        "execute", 1, user_params={"mode": "raise_code", "error": error, "code": code}
    )
    assert (frame["status"], frame["error_code"], frame["retryable"], frame["restart_worker"]) == (
        "ERROR",
        code,
        retryable,
        restart,
    )
    assert frame["message"].endswith("requested a code")


def test_an_exception_in_pre_finishes_the_step(adapter: AdapterProcess) -> None:
    frame = adapter.step("pre", 1, user_params={"mode": "raise", "error": "ValueError"})
    assert frame["error_code"] == ALGORITHM_EXCEPTION
    assert adapter.log_lines()[-2:] == ["on_step_start s1 1 PC", "on_step_finish s1 1 ERROR"]


def test_algorithm_error_code_debug_and_message_are_forwarded(adapter: AdapterProcess) -> None:
    frame = adapter.step("execute", 1, user_params={"mode": "error"})
    assert (frame["status"], frame["error_code"], frame["message"]) == (
        "ERROR",
        "1001",
        "pid not supported",
    )
    assert frame["debug"] == {"pid": "P1", "why": "not in list"}
    assert frame["data"]["hint"] == "check the pid"
    assert frame["extra"] == {"custom_top_level": 42}
    assert "original" not in frame


def test_numpy_scalars_are_converted(adapter: AdapterProcess) -> None:
    frame = adapter.step("execute", 1, user_params={"mode": "numpy"})
    assert frame["status"] == "OK"
    assert (frame["data"]["score"], frame["data"]["count"]) == (0.5, 3)


@pytest.mark.parametrize(
    ("mode", "code", "words"),
    [
        ("status_ng", INVALID_RESULT, 'status: top-level status "NG" is not allowed'),
        ("ng_outside", COORDINATE_INVALID, "data.defect_rects[0]"),
        ("ndarray", INVALID_RESULT, "data.mask: numpy.ndarray (shape (2, 2)"),
        ("bytes", INVALID_RESULT, "bytes at data.blob"),
        ("not_dict", INVALID_RESULT, "execute must return a dict"),
    ],
)
def test_invalid_results_become_errors_with_the_original_kept(
    adapter: AdapterProcess, mode: str, code: str, words: str
) -> None:
    frame = adapter.step(
        "execute", 1, user_params={"mode": mode}, image_meta={"width": 100, "height": 100}
    )
    assert (frame["status"], frame["error_code"]) == ("ERROR", code)
    assert frame["message"].startswith("invalid execute result: ")
    assert words in frame["message"]
    assert frame["original"] is not None
    assert frame["problems"][0]["code"] == code
    if mode == "ng_outside":
        assert frame["original"]["data"]["defect_rects"] == [
            {"x": 90, "y": 90, "width": 50, "height": 50}
        ]
    if mode == "ndarray":
        assert "array(" in frame["original"]["data"]["mask"]
    assert adapter.log_lines()[-1] == "on_step_finish s1 1 ERROR"


def test_the_image_segment_is_attached_before_the_algorithm_reads_it(
    adapter: AdapterProcess,
) -> None:
    image = np.arange(24 * 32 * 3, dtype=np.uint8).reshape(24, 32, 3)
    shm_id = f"adapter-test-{uuid.uuid4().hex}"
    meta = write_image_array_to_shared_memory(shm_id, image)
    try:
        frame = adapter.step(
            "execute", 1, user_params={"mode": "image"}, shared_mem_id=shm_id, image_meta=meta
        )
    finally:
        dev_clear_shared_memory(shm_id)
    assert frame["status"] == "OK", frame
    assert frame["data"]["shape"] == [24, 32, 3]
    assert frame["data"]["sum"] == int(image.astype(np.int64).sum())
    assert segment_name_for_id(shm_id) in frame["data"]["cached_before_read"]
    assert "attach_ms" in frame["timings"]


def test_a_missing_image_is_left_to_the_algorithm(adapter: AdapterProcess) -> None:
    frame = adapter.step(
        "execute",
        1,
        user_params={"mode": "image"},
        shared_mem_id="no-such-segment",
        image_meta={"width": 4, "height": 2},
    )
    assert frame["status"] == "OK"  # the seed reader gives a zero image with a warning
    assert (frame["data"]["shape"], frame["data"]["sum"]) == ([2, 4, 3], 0)
    assert "image load failed" in adapter.stderr()


def test_diagnostics_are_forwarded_once(adapter: AdapterProcess) -> None:
    assert adapter.step("pre", 1)["diagnostics"] == {"pre_calls": 1}
    assert adapter.step("execute", 1)["diagnostics"] == {"execute_calls": 1}
    assert adapter.call("info")["diagnostics"] == {}


def test_setup_failure_is_reported_and_setup_is_not_run_again(tmp_path: Path) -> None:
    with AdapterProcess(tmp_path, env={"PROBE_SETUP_FAIL": "1"}) as adapter:
        first = adapter.step("pre", 1)
        assert (first["status"], first["error_code"], first["restart_worker"]) == (
            "ERROR",
            "1003",
            True,
        )
        assert "setup raised FatalError: model file missing" in first["message"]
        again = adapter.call("setup")
        assert again["status"] == "ERROR" and "setup failed earlier" in again["message"]
        assert adapter.log_lines().count("setup") == 1
        assert "on_step_start s1 1 PC" not in adapter.log_lines()
