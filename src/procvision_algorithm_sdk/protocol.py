"""The worker frame protocol: 4-byte big-endian length + UTF-8 JSON, and its message builders.

This is the one place frames are encoded and decoded; the adapter, the Runner and the CLI all
import it (contract section 6).
"""

from __future__ import annotations

import json
import os
import struct
import time
from typing import Any, BinaryIO

from ._version import __version__
from .errors import PROTOCOL_ERROR, ProtocolError

PROTOCOL_VERSION = "1.0"
MAX_FRAME_BYTES = 16 * 1024 * 1024
_LENGTH = struct.Struct(">I")
# One shared encoder: json.dumps with keyword arguments builds a new one per call (~2 us a frame).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)

PHASES = (
    "info",
    "setup",
    "pre",
    "execute",
    "reset",
    "on_step_start",
    "on_step_finish",
    "teardown",
)
CAPABILITIES = ("ping", "call", "shutdown", "shared_memory:v1", *PHASES)


class FrameTooLarge(ProtocolError):
    """A frame announced or built beyond MAX_FRAME_BYTES."""


class BadFrame(ProtocolError):
    """A complete frame whose payload is not a UTF-8 JSON object (the stream is still in sync)."""


_INFINITY = float("inf")


def _refuse_constant(name: str) -> Any:
    raise BadFrame(f"frame is not valid JSON: {name} is not a JSON number")


def _finite_float(text: str) -> float:
    # Only float tokens pay for this (~70 ns each); a call frame usually has none.
    value = float(text)
    if value == _INFINITY or value == -_INFINITY:
        raise BadFrame(f"frame is not valid JSON: number {text[:40]} overflows a float")
    return value


# Every frame is encoded with allow_nan=False, so decoding accepts exactly what encoding can
# echo back: NaN, Infinity and numbers that overflow to inf are refused (1010), not decoded.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def now_ms() -> int:
    """Return wall-clock milliseconds, the protocol's timestamp unit."""
    return int(time.time() * 1000)


def encode_frame(message: dict[str, Any]) -> bytes:
    """Return the bytes of one frame carrying `message`."""
    payload = _ENCODER.encode(message).encode("utf-8")
    if len(payload) > MAX_FRAME_BYTES:
        raise FrameTooLarge(f"frame of {len(payload)} bytes exceeds {MAX_FRAME_BYTES}")
    return _LENGTH.pack(len(payload)) + payload


def decode_payload(payload: bytes) -> dict[str, Any]:
    """Decode one frame's payload into a message dict; BadFrame if it is not a JSON object.

    Also BadFrame: NaN/Infinity, numbers overflowing a float, and nesting too deep to decode.
    """
    if not payload:
        raise BadFrame("empty frame (zero length)")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadFrame(f"frame is not valid UTF-8: {exc}") from exc
    try:
        message = _DECODER.decode(text)
    except BadFrame:
        raise
    except ValueError as exc:
        raise BadFrame(f"frame is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise BadFrame("frame is not valid JSON: nested too deeply to decode") from exc
    if not isinstance(message, dict):
        raise BadFrame(f"frame must be a JSON object, got {type(message).__name__}")
    return message


def _read_exact(stream: BinaryIO | int, size: int) -> bytes | None:
    """Read exactly `size` bytes (short reads retried); None on EOF before the first byte."""
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = os.read(stream, remaining) if isinstance(stream, int) else stream.read(remaining)
        if not chunk:
            if remaining == size:
                return None
            raise EOFError(f"stream closed inside a frame ({size - remaining}/{size} bytes)")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(stream: BinaryIO | int) -> dict[str, Any] | None:
    """Read one frame from a binary stream or fd; None on a clean EOF between frames.

    A zero-length or undecodable frame raises BadFrame after consuming it, so the reader stays
    in sync and may answer with an error frame. An oversized length raises FrameTooLarge; the
    stream cannot be resynchronised after that.
    """
    header = _read_exact(stream, _LENGTH.size)
    if header is None:
        return None
    (length,) = _LENGTH.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise FrameTooLarge(f"frame of {length} bytes announced, the limit is {MAX_FRAME_BYTES}")
    if length == 0:
        raise BadFrame("empty frame (zero length)")
    payload = _read_exact(stream, length)
    if payload is None:
        raise EOFError("stream closed inside a frame")
    return decode_payload(payload)


def write_frame(stream: BinaryIO | int, message: dict[str, Any]) -> None:
    """Write one frame to a binary stream or fd and flush it."""
    data = encode_frame(message)
    if isinstance(stream, int):
        view = memoryview(data)
        while view:
            written = os.write(stream, view)
            view = view[written:]
    else:
        stream.write(data)
        stream.flush()


# Message builders: every frame on the wire is made by one of these.


def hello_from_worker(capabilities: tuple[str, ...] = CAPABILITIES) -> dict[str, Any]:
    """The worker's first frame."""
    return {
        "type": "hello",
        "sdk_version": __version__,
        "protocol_version": PROTOCOL_VERSION,
        "timestamp_ms": now_ms(),
        "capabilities": list(capabilities),
    }


def hello_from_runner(
    runner_version: str, heartbeat_interval_ms: int, heartbeat_grace_ms: int
) -> dict[str, Any]:
    """The Runner's hello, carrying heartbeat settings."""
    return {
        "type": "hello",
        "runner_version": runner_version,
        "protocol_version": PROTOCOL_VERSION,
        "heartbeat_interval_ms": int(heartbeat_interval_ms),
        "heartbeat_grace_ms": int(heartbeat_grace_ms),
        "timestamp_ms": now_ms(),
    }


def ping(request_id: str) -> dict[str, Any]:
    """A liveness probe."""
    return {"type": "ping", "request_id": request_id, "timestamp_ms": now_ms()}


def pong(request_id: Any) -> dict[str, Any]:
    """The answer to a ping."""
    return {"type": "pong", "request_id": request_id, "timestamp_ms": now_ms(), "status": "OK"}


def call(
    request_id: str,
    phase: str,
    *,
    step_index: int | None = None,
    pid: str | None = None,
    session: dict[str, Any] | None = None,
    user_params: dict[str, Any] | None = None,
    shared_mem_id: str | None = None,
    image_meta: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A call of one phase; fields go in `data` (extra keys such as `session_state` too)."""
    data: dict[str, Any] = {
        "step_index": step_index,
        "pid": pid,
        "session": session,
        "user_params": user_params if user_params is not None else {},
        "shared_mem_id": shared_mem_id,
        "image_meta": image_meta if image_meta is not None else {},
    }
    data.update(extra)
    return {
        "type": "call",
        "request_id": request_id,
        "phase": phase,
        "timestamp_ms": now_ms(),
        "data": data,
    }


def call_fields(message: dict[str, Any]) -> dict[str, Any]:
    """Return a call's fields merged from the top level and `data` (`data` wins)."""
    fields = {k: v for k, v in message.items() if k != "data"}
    data = message.get("data")
    if isinstance(data, dict):
        fields.update(data)
    return fields


def result(
    request_id: Any,
    status: str,
    message: str = "",
    error_code: str | None = None,
    data: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The outcome of a call (extra keys: debug, diagnostics, timings, session_delta, ...)."""
    frame: dict[str, Any] = {
        "type": "result",
        "request_id": request_id,
        "timestamp_ms": now_ms(),
        "status": status,
        "message": message,
        "error_code": error_code,
        "data": data if data is not None else {},
    }
    frame.update(extra)
    return frame


def error(
    request_id: Any, message: str, error_code: str = PROTOCOL_ERROR, **extra: Any
) -> dict[str, Any]:
    """A failure that is not a call's result (bad frame, busy, unknown message)."""
    frame: dict[str, Any] = {
        "type": "error",
        "request_id": request_id,
        "timestamp_ms": now_ms(),
        "status": "ERROR",
        "message": message,
        "error_code": error_code,
    }
    frame.update(extra)
    return frame


def shutdown(request_id: str | None = None) -> dict[str, Any]:
    """The Runner asks the worker to tear down and exit."""
    return {"type": "shutdown", "request_id": request_id, "timestamp_ms": now_ms()}


def shutdown_ack(request_id: Any = None) -> dict[str, Any]:
    """The worker's acknowledgement before it exits 0."""
    return {"type": "shutdown", "request_id": request_id, "status": "OK", "timestamp_ms": now_ms()}


# A worker that advertises LOG_MARKS writes this line to stderr after each call, before the
# call's last frame: the Runner's stderr reader reaching it has every line of that call (stderr
# and the protocol are two pipes, read by two threads, so nothing else orders them).
LOG_MARKS = "log_marks:v1"
_LOG_MARK_HEAD = "\x1eprocvision-log-mark "


def log_mark_line(request_id: str) -> bytes:
    """The stderr line that closes call `request_id`'s output (a newline first ends a partial)."""
    return f"\n{_LOG_MARK_HEAD}{request_id}\n".encode()


def parse_log_mark(line: str) -> str | None:
    """The request id of a log-mark line, or None for any other stderr line."""
    return line[len(_LOG_MARK_HEAD) :] if line.startswith(_LOG_MARK_HEAD) else None
