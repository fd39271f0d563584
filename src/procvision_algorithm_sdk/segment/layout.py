"""The segment layout: header codec, dtype and encoding codes, segment naming, payload views."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

SEGMENT_PREFIX = "pvs_"
MAGIC = b"PVSM"
LAYOUT_VERSION = 1
HEADER_SIZE = 64

ENCODING_RAW = 0
ENCODING_JPEG = 1
ENCODING_PNG = 2
ENCODING_OTHER = 3
ENCODING_NAMES = {
    ENCODING_RAW: "raw",
    ENCODING_JPEG: "jpeg",
    ENCODING_PNG: "png",
    ENCODING_OTHER: "other",
}
ENCODING_CODES = {name: code for code, name in ENCODING_NAMES.items()}
ENCODING_CODES["jpg"] = ENCODING_JPEG

DTYPE_CODES: dict[str, int] = {
    "uint8": 1,
    "uint16": 2,
    "int16": 3,
    "int32": 4,
    "float32": 5,
    "float64": 6,
    "bool": 7,
    "int8": 8,
    "uint32": 9,
}
DTYPES_BY_CODE: dict[int, np.dtype[Any]] = {
    code: np.dtype(name) for name, code in DTYPE_CODES.items()
}

FLAG_RETIRED = 1

_HEADER = struct.Struct("<4sHBBQIIIIQI20x")
assert _HEADER.size == HEADER_SIZE
_SEQ = struct.Struct("<Q")
_SEQ_OFFSET = 8
_FLAGS = struct.Struct("<I")
_FLAGS_OFFSET = 40

# Names must fit macOS's 31-byte limit including the leading "/": prefix + pid + "_" + 8 hex.
_OWNED_NAME = re.compile(r"^pvs_(\d{1,10})_([0-9a-f]{8})$")
_ID_NAME = re.compile(r"^pvs_h[0-9a-f]{20}$")


@dataclass(frozen=True)
class SegmentHeader:
    """The decoded header of one segment."""

    magic: bytes
    version: int
    encoding: int
    dtype_code: int
    seq: int
    height: int
    width: int
    channels: int
    owner_pid: int
    payload_size: int
    flags: int

    @property
    def valid(self) -> bool:
        """Whether magic and layout version are ours."""
        return self.magic == MAGIC and self.version == LAYOUT_VERSION

    @property
    def retired(self) -> bool:
        """Whether the owner has unlinked this segment (readers must drop their mapping)."""
        return bool(self.flags & FLAG_RETIRED)

    @property
    def encoding_name(self) -> str:
        """ "raw", "jpeg", "png", "other" or "unknown"."""
        return ENCODING_NAMES.get(self.encoding, "unknown")

    @property
    def dtype(self) -> np.dtype[Any] | None:
        """The numpy dtype of a raw payload (None when the code is unknown)."""
        return DTYPES_BY_CODE.get(self.dtype_code)


def dtype_code(dtype: Any) -> int:
    """Return the header code of a numpy dtype; ValueError when the layout cannot carry it."""
    name = np.dtype(dtype).name
    if name not in DTYPE_CODES or np.dtype(dtype).byteorder == ">":
        raise ValueError(f"dtype {np.dtype(dtype)!s} cannot be carried in a segment")
    return DTYPE_CODES[name]


def write_header(
    buf: Any,
    *,
    seq: int,
    encoding: int = ENCODING_RAW,
    dtype: Any = np.uint8,
    height: int = 0,
    width: int = 0,
    channels: int = 0,
    payload_size: int = 0,
    owner_pid: int | None = None,
    flags: int = 0,
) -> None:
    """Write a complete header at the start of `buf` (sequence number last, so it publishes)."""
    pid = os.getpid() if owner_pid is None else owner_pid
    _HEADER.pack_into(
        buf,
        0,
        MAGIC,
        LAYOUT_VERSION,
        encoding,
        dtype_code(dtype),
        0,
        height,
        width,
        channels,
        pid,
        payload_size,
        flags,
    )
    _SEQ.pack_into(buf, _SEQ_OFFSET, seq)


def set_sequence(buf: Any, seq: int) -> None:
    """Overwrite only the sequence number (0 marks a write in progress)."""
    _SEQ.pack_into(buf, _SEQ_OFFSET, seq)


def mark_retired(buf: Any) -> None:
    """Flag the segment retired so readers that cached a mapping drop it."""
    (flags,) = _FLAGS.unpack_from(buf, _FLAGS_OFFSET)
    _FLAGS.pack_into(buf, _FLAGS_OFFSET, flags | FLAG_RETIRED)
    set_sequence(buf, 0)


def read_header(buf: Any) -> SegmentHeader:
    """Decode the header at the start of `buf` (ValueError when `buf` is shorter than a header)."""
    if len(buf) < HEADER_SIZE:
        raise ValueError("buffer shorter than a segment header")
    return SegmentHeader(*_HEADER.unpack_from(buf, 0))


def is_retired(buf: Any) -> bool:
    """Cheap check of the retired flag (for the reader's cache)."""
    if len(buf) < HEADER_SIZE:
        return True
    (flags,) = _FLAGS.unpack_from(buf, _FLAGS_OFFSET)
    return bool(flags & FLAG_RETIRED)


def new_segment_name(pid: int | None = None) -> str:
    """Return a fresh segment name: prefix, owner pid and 32 random bits."""
    return f"{SEGMENT_PREFIX}{os.getpid() if pid is None else pid}_{secrets.token_hex(4)}"


def segment_name_for_id(shared_mem_id: str) -> str:
    """Map a shared_mem_id to a safe segment name; our own segment names pass through unchanged."""
    text = str(shared_mem_id)
    if _OWNED_NAME.match(text) or _ID_NAME.match(text):
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    return f"{SEGMENT_PREFIX}h{digest}"


def owner_pid_from_name(name: str) -> int | None:
    """Return the owner pid encoded in a SlotRing segment name, None for id-derived names."""
    match = _OWNED_NAME.match(name)
    return int(match.group(1)) if match else None


def payload_array(buf: Any, shape: tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray:
    """An array over the payload of `buf`.

    Built with np.frombuffer, which holds a buffer export: the mapping then cannot be closed
    under the array (np.ndarray(buffer=...) holds none, and a closed mapping would segfault).
    """
    dt = np.dtype(dtype)
    count = 1
    for n in shape:
        count *= int(n)
    return np.frombuffer(buf, dtype=dt, count=count, offset=HEADER_SIZE).reshape(shape)
