"""Frames the worker must refuse without losing itself: each is answered, the worker lives on.

Real adapter subprocesses, real frames. Every input here once stopped the reader thread or the
main thread; afterwards pings went unanswered and the process never exited.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from adapter_algos.client import AdapterProcess

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
