"""Frames the worker must refuse without losing itself: each is answered, the worker lives on.

Real adapter subprocesses, real frames. Every input here once stopped the reader thread or the
main thread; afterwards pings went unanswered and the process never exited.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.adapter_process import AdapterProcess

from procvision_algorithm_sdk import protocol
from procvision_algorithm_sdk.errors import PROTOCOL_ERROR


@pytest.fixture
def adapter(tmp_path: Path) -> Iterator[AdapterProcess]:
    with AdapterProcess(tmp_path) as proc:
        yield proc


def _frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def _assert_error_1010(frame: dict, words: str) -> None:
    assert (frame["type"], frame["status"], frame["error_code"], frame["request_id"]) == (
        "error",
        "ERROR",
        PROTOCOL_ERROR,
        None,
    ), frame
    assert words in frame["message"], frame


def _assert_alive_then_shutdown(adapter: AdapterProcess) -> None:
    adapter.ping()
    assert adapter.call("info")["status"] == "OK"
    adapter.send(protocol.shutdown("bye"))
    ack = adapter.recv()
    assert (ack["type"], ack["status"], ack["request_id"]) == ("shutdown", "OK", "bye")
    adapter.recv_eof()
    assert adapter.wait() == 0
    assert adapter.log_lines().count("teardown") == 1


UNENCODABLE_NUMBERS = [
    pytest.param(b'{"type":"ping","request_id":NaN}', "NaN", id="ping-nan"),
    pytest.param(b'{"type":"zzz","request_id":Infinity}', "Infinity", id="unknown-infinity"),
    pytest.param(b'{"type":"call","phase":"info","request_id":NaN}', "NaN", id="call-nan"),
    pytest.param(b'{"type":"ping","request_id":-Infinity}', "-Infinity", id="ping-neg-infinity"),
    pytest.param(b'{"type":"ping","request_id":1e999}', "overflows", id="ping-overflow"),
    pytest.param(
        b'{"type":"call","phase":"execute","request_id":"c","data":{"step_index":1,'
        b'"user_params":{"threshold":-1e400}}}',
        "overflows",
        id="call-param-overflow",
    ),
]


@pytest.mark.parametrize(("payload", "words"), UNENCODABLE_NUMBERS)
def test_non_finite_numbers_get_1010_and_the_worker_lives_on(
    adapter: AdapterProcess, payload: bytes, words: str
) -> None:
    adapter.send_raw(_frame(payload))
    _assert_error_1010(adapter.recv(), words)
    _assert_alive_then_shutdown(adapter)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"[" * 100000 + b"]" * 100000, id="arrays"),
        pytest.param(
            b'{"type":"ping","request_id":' + b'{"a":' * 50000 + b"1" + b"}" * 50001,
            id="objects-in-a-ping",
        ),
    ],
)
def test_nesting_too_deep_to_decode_gets_1010_and_the_worker_lives_on(
    adapter: AdapterProcess, payload: bytes
) -> None:
    adapter.send_raw(_frame(payload))
    _assert_error_1010(adapter.recv(), "nested too deeply")
    _assert_alive_then_shutdown(adapter)


def _huge_request_id(message: dict) -> bytes:
    """A frame within the limit whose request_id, echoed in any answer, is beyond it."""
    head = protocol.encode_frame({**message, "request_id": ""})[4:]
    request_id = "r" * (protocol.MAX_FRAME_BYTES - len(head))
    payload = protocol.encode_frame({**message, "request_id": request_id})[4:]
    assert len(payload) == protocol.MAX_FRAME_BYTES
    return _frame(payload)


@pytest.mark.parametrize(
    ("message", "words"),
    [
        pytest.param({"type": "ping"}, "pong frame could not be encoded", id="ping"),
        pytest.param({"type": "dance"}, "error frame could not be encoded", id="unknown-type"),
        pytest.param(
            {"type": "call", "phase": "info"}, "result frame could not be encoded", id="call"
        ),
        pytest.param(
            {"type": "call", "phase": "fly"}, "error frame could not be encoded", id="bad-phase"
        ),
    ],
)
@pytest.mark.slow
def test_an_answer_too_large_to_echo_becomes_1010_with_a_null_request_id(
    adapter: AdapterProcess, message: dict, words: str
) -> None:
    adapter.send_raw(_huge_request_id(message))
    frame = adapter.recv()
    _assert_error_1010(frame, words)
    assert "exceeds" in frame["message"]
    _assert_alive_then_shutdown(adapter)


def test_a_shutdown_whose_ack_cannot_be_echoed_still_tears_down_once(
    adapter: AdapterProcess,
) -> None:
    adapter.send_raw(_huge_request_id({"type": "shutdown"}))
    _assert_error_1010(adapter.recv(), "shutdown frame could not be encoded")
    adapter.recv_eof()
    assert adapter.wait() == 0
    assert adapter.log_lines().count("teardown") == 1


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(_frame(b'{"type":"ping","request_id":NaN}'), id="nan"),
        pytest.param(_frame(b"[" * 100000 + b"]" * 100000), id="deep"),
        pytest.param(_huge_request_id({"type": "ping"}), id="unechoable"),
    ],
)
def test_stdin_eof_after_a_bad_frame_tears_down_once_and_exits_0(
    adapter: AdapterProcess, bad: bytes
) -> None:
    adapter.send_raw(bad)
    assert adapter.recv()["error_code"] == PROTOCOL_ERROR
    adapter.close_stdin()
    adapter.recv_eof()
    assert adapter.wait() == 0
    assert adapter.log_lines().count("teardown") == 1
