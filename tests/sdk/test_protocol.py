"""Frame encoding and decoding over real pipes: limits, short reads, malformed payloads."""

from __future__ import annotations

import json
import os
import struct
import threading
import time

import pytest

from procvision_algorithm_sdk import protocol
from procvision_algorithm_sdk.errors import PROTOCOL_ERROR


class _Any:
    """Equal to anything (for timestamps)."""

    def __eq__(self, other: object) -> bool:
        return True


ANY = _Any()


def _pipe_with(data: bytes, chunk: int | None = None) -> int:
    """A pipe read end that receives `data` (in `chunk`-byte pieces from a thread)."""
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        try:
            step = chunk or len(data) or 1
            for start in range(0, len(data), step):
                os.write(write_fd, data[start : start + step])
                if chunk:
                    time.sleep(0.001)
        finally:
            os.close(write_fd)

    threading.Thread(target=feed, daemon=True).start()
    return read_fd


def test_round_trip_over_a_pipe_with_short_reads() -> None:
    messages = [
        protocol.ping("p1"),
        protocol.call("c1", "execute", step_index=2, pid="P", user_params={"t": "ü✓"}),
        {"type": "x", "nested": {"list": [1, 2.5, None, True]}},
    ]
    data = b"".join(protocol.encode_frame(m) for m in messages)
    fd = _pipe_with(data, chunk=3)
    try:
        got = [protocol.read_frame(fd) for _ in messages]
        assert got == messages
        assert protocol.read_frame(fd) is None  # clean EOF between frames
    finally:
        os.close(fd)


def test_read_from_a_buffered_stream_and_write_to_fd() -> None:
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb") as stream:
        protocol.write_frame(write_fd, protocol.pong("a"))
        protocol.write_frame(write_fd, protocol.shutdown_ack("b"))
        os.close(write_fd)
        assert protocol.read_frame(stream)["type"] == "pong"
        assert protocol.read_frame(stream) == {**protocol.shutdown_ack("b"), "timestamp_ms": ANY}
        assert protocol.read_frame(stream) is None


def test_encoding_is_big_endian_length_plus_utf8_json() -> None:
    frame = protocol.encode_frame({"k": "é"})
    (length,) = struct.unpack(">I", frame[:4])
    assert length == len(frame) - 4
    assert json.loads(frame[4:].decode("utf-8")) == {"k": "é"}


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"\xff\xfe{}", "UTF-8"),
        (b"{not json", "JSON"),
        (b"[1, 2]", "object"),
        (b'"text"', "object"),
    ],
)
def test_bad_payload_raises_badframe_and_the_stream_stays_in_sync(
    payload: bytes, words: str
) -> None:
    data = struct.pack(">I", len(payload)) + payload + protocol.encode_frame({"type": "ping"})
    fd = _pipe_with(data)
    try:
        with pytest.raises(protocol.BadFrame, match=words) as info:
            protocol.read_frame(fd)
        assert info.value.error_code == PROTOCOL_ERROR
        assert protocol.read_frame(fd) == {"type": "ping"}
    finally:
        os.close(fd)


def test_zero_length_frame_is_bad_and_consumed() -> None:
    fd = _pipe_with(struct.pack(">I", 0) + protocol.encode_frame({"type": "ping"}))
    try:
        with pytest.raises(protocol.BadFrame, match="zero length"):
            protocol.read_frame(fd)
        assert protocol.read_frame(fd) == {"type": "ping"}
    finally:
        os.close(fd)


def test_oversized_announcement_raises_frame_too_large() -> None:
    fd = _pipe_with(struct.pack(">I", protocol.MAX_FRAME_BYTES + 1) + b"x" * 10)
    try:
        with pytest.raises(protocol.FrameTooLarge):
            protocol.read_frame(fd)
    finally:
        os.close(fd)


def test_encoding_refuses_an_oversized_message() -> None:
    with pytest.raises(protocol.FrameTooLarge):
        protocol.encode_frame({"blob": "x" * (protocol.MAX_FRAME_BYTES + 1)})


def test_a_frame_at_the_limit_passes() -> None:
    overhead = len(protocol.encode_frame({"b": ""})) - 4
    message = {"b": "x" * (protocol.MAX_FRAME_BYTES - overhead)}
    frame = protocol.encode_frame(message)
    assert len(frame) - 4 == protocol.MAX_FRAME_BYTES
    fd = _pipe_with(frame)
    try:
        assert protocol.read_frame(fd) == message
    finally:
        os.close(fd)


def test_eof_inside_a_frame_is_an_error() -> None:
    frame = protocol.encode_frame({"type": "ping"})
    for cut in (2, len(frame) - 1):
        fd = _pipe_with(frame[:cut])
        try:
            with pytest.raises(EOFError):
                protocol.read_frame(fd)
        finally:
            os.close(fd)


def test_nan_is_refused_when_encoding() -> None:
    with pytest.raises(ValueError):
        protocol.encode_frame({"x": float("nan")})


def test_builders() -> None:
    hello = protocol.hello_from_worker()
    assert hello["type"] == "hello"
    assert hello["protocol_version"] == protocol.PROTOCOL_VERSION
    assert set(protocol.PHASES) <= set(hello["capabilities"])
    runner_hello = protocol.hello_from_runner("9.9", 5000, 2000)
    assert runner_hello["heartbeat_interval_ms"] == 5000
    assert protocol.pong(7) == {**protocol.pong(7), "type": "pong", "request_id": 7, "status": "OK"}
    err = protocol.error("r", "bad", busy=True)
    assert (err["type"], err["status"], err["error_code"], err["busy"]) == (
        "error",
        "ERROR",
        PROTOCOL_ERROR,
        True,
    )
    res = protocol.result("r", "OK", data={"a": 1}, debug={"d": 2})
    assert (res["type"], res["data"], res["debug"], res["error_code"]) == (
        "result",
        {"a": 1},
        {"d": 2},
        None,
    )
    call = protocol.call("c", "pre", step_index=1, session_state={"k": 1})
    assert call["data"]["session_state"] == {"k": 1}
    assert protocol.shutdown("s")["type"] == "shutdown"
    for message in (hello, runner_hello, err, res, call):
        assert protocol.decode_payload(protocol.encode_frame(message)[4:]) == message


def test_call_fields_data_wins_over_top_level() -> None:
    message = {"type": "call", "phase": "pre", "step_index": 1, "pid": "A", "data": {"pid": "B"}}
    fields = protocol.call_fields(message)
    assert fields["pid"] == "B"
    assert fields["step_index"] == 1
    assert fields["phase"] == "pre"
    assert protocol.call_fields({"phase": "info", "data": "junk"})["phase"] == "info"


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b'{"type":"ping","request_id":NaN}', "NaN is not a JSON number"),
        (b'{"type":"zzz","request_id":Infinity}', "Infinity is not a JSON number"),
        (b'{"x":[1,-Infinity]}', "-Infinity is not a JSON number"),
        (b'{"type":"ping","request_id":1e999}', "overflows a float"),
        (b'{"x":-1.5e400}', "overflows a float"),
        (b'{"x":' + b"9" * 400 + b".0}", "overflows a float"),
        (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
        (b'{"a":' * 100000 + b"1" + b"}" * 100000, "nested too deeply"),
    ],
)
def test_what_encoding_could_not_echo_is_a_bad_frame(payload: bytes, words: str) -> None:
    # Frames are encoded with allow_nan=False: anything decoded must be encodable again.
    data = struct.pack(">I", len(payload)) + payload + protocol.encode_frame({"type": "ping"})
    fd = _pipe_with(data)
    try:
        with pytest.raises(protocol.BadFrame, match=words) as info:
            protocol.read_frame(fd)
        assert info.value.error_code == PROTOCOL_ERROR
        assert protocol.read_frame(fd) == {"type": "ping"}
    finally:
        os.close(fd)


def test_finite_numbers_still_decode_exactly() -> None:
    payload = b'{"a":1.5,"b":-0.0,"c":1e308,"d":1e-400,"e":12345678901234567890,"f":[2.5e-3]}'
    message = protocol.decode_payload(payload)
    assert message == {
        "a": 1.5,
        "b": -0.0,
        "c": 1e308,
        "d": 0.0,
        "e": 12345678901234567890,
        "f": [2.5e-3],
    }
    assert protocol.decode_payload(protocol.encode_frame(message)[4:]) == message
