"""The one frame writer: every producer of a frame commits it here, in one protocol.

The Runner's slots and the seed API's writers both call these functions, so the payload layout
and the commit protocol are written once: the sequence number goes to 0 before the payload is
touched (a reader sees "no complete frame", never a half-written one), then the whole header is
written with the new sequence number last (`write_header`), which publishes the frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .layout import (
    ENCODING_NAMES,
    ENCODING_RAW,
    HEADER_SIZE,
    dtype_code,
    payload_array,
    set_sequence,
    write_header,
)

__all__ = [
    "COLOR_SPACES",
    "color_space_for",
    "commit_raw",
    "frame_geometry",
    "frame_meta",
    "open_raw",
    "write_encoded",
    "write_raw",
]

# The color spaces a raw frame's image_meta may name (what the reader can turn into RGB).
COLOR_SPACES = ("RGB", "BGR", "GRAY")

Geometry = tuple[int, int, int]


def frame_geometry(shape: tuple[int, ...]) -> Geometry:
    """(height, width, channels) of an H x W or H x W x 1|3|4 frame; ValueError otherwise."""
    if len(shape) == 2:
        height, width, channels = shape[0], shape[1], 1
    elif len(shape) == 3 and shape[2] in (1, 3, 4):
        height, width, channels = shape
    else:
        raise ValueError(f"a frame is H x W or H x W x 1|3|4, got shape {tuple(shape)}")
    if height <= 0 or width <= 0:
        raise ValueError("a frame must not be empty")
    return int(height), int(width), int(channels)


def color_space_for(channels: int, color_space: str = "RGB") -> str:
    """The image_meta color_space of a raw frame ("GRAY" for one channel); ValueError if unfit."""
    space = "GRAY" if channels == 1 else str(color_space).upper()
    if space not in COLOR_SPACES or (space == "GRAY" and channels != 1):
        raise ValueError(f"color_space {color_space!r} does not fit {channels} channels")
    return space


def frame_meta(
    width: int, height: int, color_space: str, encoding: int, seq: int
) -> dict[str, Any]:
    """The image_meta fields that describe a frame just committed."""
    return {
        "width": width,
        "height": height,
        "color_space": color_space,
        "encoding": ENCODING_NAMES[encoding],
        "shm_seq": seq,
    }


def _check_room(buf: Any, nbytes: int) -> None:
    if HEADER_SIZE + nbytes > len(buf):
        raise ValueError(f"segment of {len(buf)} bytes cannot hold a payload of {nbytes} bytes")


def open_raw(buf: Any, geometry: Geometry, dtype: Any = np.uint8) -> np.ndarray:
    """Start a raw write: mark the frame in progress, return a writable view of the payload.

    Fill the view, drop it, then `commit_raw` with the same geometry and dtype.
    """
    dt = np.dtype(dtype)
    dtype_code(dt)  # ValueError before anything is touched when the layout cannot carry it
    height, width, channels = geometry
    _check_room(buf, height * width * channels * dt.itemsize)
    set_sequence(buf, 0)
    return payload_array(buf, geometry, dt)


def commit_raw(buf: Any, geometry: Geometry, dtype: Any, seq: int) -> None:
    """Publish the raw frame written through `open_raw` under sequence number `seq`."""
    height, width, channels = geometry
    dt = np.dtype(dtype)
    write_header(
        buf,
        seq=seq,
        encoding=ENCODING_RAW,
        dtype=dt,
        height=height,
        width=width,
        channels=channels,
        payload_size=height * width * channels * dt.itemsize,
    )


def write_raw(buf: Any, frame: Any, seq: int) -> Geometry:
    """Copy an H x W (x 1|3|4) array into the segment once and publish it under `seq`."""
    array = np.asarray(frame)
    geometry = frame_geometry(array.shape)
    target = open_raw(buf, geometry, array.dtype)
    np.copyto(target, array.reshape(geometry))
    del target  # no view may outlive the write (the owner may close the mapping later)
    commit_raw(buf, geometry, array.dtype, seq)
    return geometry


def write_encoded(buf: Any, data: Any, encoding: int, width: int, height: int, seq: int) -> None:
    """Copy encoded image bytes (JPEG, PNG, other) into the segment and publish them under `seq`."""
    if encoding not in ENCODING_NAMES or encoding == ENCODING_RAW:
        raise ValueError(f"unknown image encoding code {encoding!r}")
    payload = memoryview(data).cast("B")
    _check_room(buf, len(payload))
    set_sequence(buf, 0)
    buf[HEADER_SIZE : HEADER_SIZE + len(payload)] = payload
    write_header(
        buf,
        seq=seq,
        encoding=encoding,
        height=int(height),
        width=int(width),
        channels=3,
        payload_size=len(payload),
    )
