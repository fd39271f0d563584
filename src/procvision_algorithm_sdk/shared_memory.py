"""Seed shared-memory API on real shared memory: the zero-copy reader (and the seed's writers).

The reader maps a segment read-only once, caches the mapping (bounded, dropped when the owner
retires the segment) and returns read-only ndarray views over the payload. The layout and
naming live in `segment`. image_meta keys: `width`, `height`, `color_space` ("RGB", "BGR",
"GRAY"), `timestamp_ms`, `camera_id`, `shm_seq` (must equal the header's sequence number when
present) and `encoding` ("raw", "jpeg", "png"; must match the header when present).

The attach cache lives in `_attach_cache`, the writers in `_seed_writers`; this module re-exports
every name it offered before they moved.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import legacy_frames
from . import segment as seg
from ._attach_cache import (
    ATTACH_CACHE_SIZE,
    _LoadFailure,
    _NoSegment,
    cache,
    cached_segment_names,
    clear_attach_cache,
    prefetch,
)
from ._seed_writers import (
    dev_clear_shared_memory,
    dev_write_image_to_shared_memory,
    write_image_array_to_shared_memory,
)
from .errors import IMAGE_LOAD_FAILED, ImageLoadError
from .imagefile import FILE_FORMATS, decode_image
from .logger import StructuredLogger

# The header stores width and height as uint32; no segment can hold a frame past these bounds,
# so a meta beyond them is refused before anything (even the seed's zero image) is sized by it.
MAX_SIDE = 2**32 - 1
MAX_FRAME_PIXELS = 2**32
STRICT_ENV = "PROC_STRICT_IMAGES"

_log = StructuredLogger()


def _strict_from_env() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def read_image_from_shared_memory(
    shared_mem_id: str, image_meta: dict[str, Any], *, strict: bool | None = None
) -> Any:
    """Return the image behind `shared_mem_id` as a read-only H x W x 3 RGB array (no copy for raw).

    Seed behaviour: None when width/height <= 0 (or beyond what a segment can hold: a side
    past 2**32-1 or more than 2**32 pixels), a zero image of the meta's size when the data
    is missing, stale, mismatched or undecodable; each with a structured warning. With
    `strict=True` or PROC_STRICT_IMAGES=1 those cases raise ImageLoadError (code 1002) instead.

    The array is valid only during the call that received `shared_mem_id`: it is a view of a
    slot the Runner reuses, so after the call returns it shows later frames' pixels. Copy what
    you keep (`image.copy()`), e.g. a reference frame stored on `self` or in the session.
    """
    strict_mode = _strict_from_env() if strict is None else bool(strict)
    meta: Mapping[str, Any] = image_meta if isinstance(image_meta, Mapping) else {}
    width, height = _as_int(meta.get("width")), _as_int(meta.get("height"))
    if width is None or height is None or width <= 0 or height <= 0:
        return _fail(
            None,
            strict_mode,
            shared_mem_id,
            "invalid_size",
            f"image_meta width/height must be positive, got {meta.get('width')!r}x"
            f"{meta.get('height')!r}",
        )
    if max(width, height) > MAX_SIDE or width * height > MAX_FRAME_PIXELS:
        return _fail(
            None,
            strict_mode,
            shared_mem_id,
            "invalid_size",
            f"image_meta width/height {width}x{height} is beyond any frame a segment can hold "
            f"({MAX_FRAME_PIXELS} pixels)",
        )
    try:
        return _read_any(shared_mem_id, meta, width, height)
    except _LoadFailure as failure:
        if strict_mode:
            return _fail(None, True, shared_mem_id, failure.cause, failure.detail)
        return _fail(
            _zero_image(height, width), False, shared_mem_id, failure.cause, failure.detail
        )


def _fail(value: Any, strict: bool, shared_mem_id: Any, cause: str, detail: str) -> Any:
    message = f"image load failed ({cause}): {detail}"
    if strict:
        raise ImageLoadError(message, error_code=IMAGE_LOAD_FAILED)
    _log.warning(
        message,
        error_code=IMAGE_LOAD_FAILED,
        cause=cause,
        shared_mem_id=str(shared_mem_id),
        returned="none" if value is None else "zero_image",
    )
    return value


def _zero_image(height: int, width: int) -> np.ndarray:
    # A broadcast view: allocates one pixel and, like the raw views, can never be made writable.
    return np.broadcast_to(np.frombuffer(bytes(3), dtype=np.uint8), (height, width, 3))


def _read_any(shared_mem_id: str, meta: Mapping[str, Any], width: int, height: int) -> np.ndarray:
    name = seg.segment_name_for_id(shared_mem_id)
    try:
        return _read(name, meta, width, height)
    except _NoSegment:
        # Hosts and tools of the original SDK hand frames over as files (contract section 11).
        try:
            frame = legacy_frames.open_legacy_frame(shared_mem_id, width, height)
        except legacy_frames.LegacyFrameError as exc:
            raise _LoadFailure(exc.cause, exc.detail) from None
        if frame is None:
            raise
    if frame.kind == "bin":
        return _checked_decoded(frame.pixels, width, height)
    return _pixels_view(frame.pixels, meta)


def _read(name: str, meta: Mapping[str, Any], width: int, height: int) -> np.ndarray:
    mapping, fresh = cache.get(name)
    try:
        return _image_from(mapping, name, meta, width, height)
    except _LoadFailure:
        if fresh:
            raise
    # The cached mapping may belong to a segment that was unlinked and recreated under the same
    # name without being retired (its owner crashed): look once more at what the name holds now.
    cache.invalidate(name)
    mapping, _ = cache.get(name)
    return _image_from(mapping, name, meta, width, height)


def _image_from(
    mapping: mmap.mmap, name: str, meta: Mapping[str, Any], width: int, height: int
) -> np.ndarray:
    try:
        header = seg.read_header(mapping)
    except ValueError:
        raise _LoadFailure("header_invalid", f"segment {name} is shorter than a header") from None
    if not header.valid:
        raise _LoadFailure("header_invalid", f"segment {name} has no ProcVision header")
    if header.retired:
        raise _LoadFailure("segment_missing", f"segment {name} was retired by its owner")
    if header.seq == 0:
        raise _LoadFailure("stale_sequence", f"segment {name} holds no complete frame")
    want_seq = meta.get("shm_seq")
    if want_seq is not None and _as_int(want_seq) != header.seq:
        raise _LoadFailure(
            "stale_sequence",
            f"segment {name} holds frame {header.seq}, image_meta asks for {want_seq!r}",
        )
    want_encoding = meta.get("encoding")
    if want_encoding is not None:
        code = seg.ENCODING_CODES.get(str(want_encoding).lower())
        if code != header.encoding:
            raise _LoadFailure(
                "header_mismatch",
                f"image_meta encoding {want_encoding!r}, segment holds {header.encoding_name}",
            )
    if seg.HEADER_SIZE + header.payload_size > len(mapping):
        raise _LoadFailure("payload_truncated", f"segment {name} is smaller than its payload")
    if header.encoding == seg.ENCODING_RAW:
        return _raw_view(mapping, header, meta, width, height)
    if header.encoding in (seg.ENCODING_JPEG, seg.ENCODING_PNG, seg.ENCODING_OTHER):
        return _decode(mapping, header, width, height)
    raise _LoadFailure("header_invalid", f"unknown encoding code {header.encoding}")


def _raw_view(
    mapping: mmap.mmap,
    header: seg.SegmentHeader,
    meta: Mapping[str, Any],
    width: int,
    height: int,
) -> np.ndarray:
    if (header.width, header.height) != (width, height):
        raise _LoadFailure(
            "header_mismatch",
            f"image_meta says {width}x{height}, segment holds {header.width}x{header.height}",
        )
    dtype = header.dtype
    if dtype is None:
        raise _LoadFailure("header_invalid", f"unknown dtype code {header.dtype_code}")
    channels = header.channels
    if channels not in (1, 3, 4):
        raise _LoadFailure("header_invalid", f"unsupported channel count {channels}")
    count = height * width * channels
    if count * dtype.itemsize > header.payload_size:
        raise _LoadFailure("payload_truncated", "payload smaller than height*width*channels")
    # A read-only mapping gives a read-only array whose WRITEABLE flag cannot be turned back on.
    pixels = np.frombuffer(mapping, dtype=dtype, count=count, offset=seg.HEADER_SIZE)
    return _pixels_view(pixels.reshape(height, width, channels), meta)


def _pixels_view(pixels: np.ndarray, meta: Mapping[str, Any]) -> np.ndarray:
    """H x W x 3 RGB view of stored H x W x 1|3|4 pixels (gray expanded, BGR flipped), no copy."""
    height, width, channels = pixels.shape
    color_space = str(meta.get("color_space") or "RGB").upper()
    if color_space not in seg.COLOR_SPACES:
        raise _LoadFailure("header_mismatch", f"unsupported color_space {color_space!r}")
    if channels == 1:
        plane = pixels[:, :, 0]
        return np.lib.stride_tricks.as_strided(
            plane,
            shape=(height, width, 3),
            strides=(plane.strides[0], plane.strides[1], 0),
            writeable=False,
        )
    if color_space == "BGR":
        return pixels[:, :, 2::-1]
    if channels == 4:
        return pixels[:, :, :3]
    return pixels


def _decode(mapping: mmap.mmap, header: seg.SegmentHeader, width: int, height: int) -> np.ndarray:
    start = seg.HEADER_SIZE
    data = mapping[start : start + header.payload_size]
    try:
        # Bounded by the meta's size: a lying header must not make us decode a huge image.
        # "other" (the seed's dev writer given e.g. a TIFF) admits every container decode_image
        # knows; a header that says jpeg or png gets only its own two decoders.
        formats = FILE_FORMATS if header.encoding == seg.ENCODING_OTHER else ("PNG", "JPEG")
        array = decode_image(data, formats=formats, max_pixels=max(width * height, 1))
    except ImageLoadError as exc:
        raise _LoadFailure(
            "decode_failed", f"{header.encoding_name} payload not decodable: {exc}"
        ) from None
    return _checked_decoded(array, width, height)


def _checked_decoded(array: np.ndarray, width: int, height: int) -> np.ndarray:
    if array.shape[:2] != (height, width):
        raise _LoadFailure(
            "size_mismatch",
            f"image_meta says {width}x{height}, decoded image is {array.shape[1]}x{array.shape[0]}",
        )
    if array.flags.writeable:
        array.flags.writeable = False
    return array


__all__ = [
    "ATTACH_CACHE_SIZE",
    "MAX_FRAME_PIXELS",
    "MAX_SIDE",
    "STRICT_ENV",
    "cached_segment_names",
    "clear_attach_cache",
    "dev_clear_shared_memory",
    "dev_write_image_to_shared_memory",
    "prefetch",
    "read_image_from_shared_memory",
    "write_image_array_to_shared_memory",
]
