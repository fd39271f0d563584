"""Seed shared-memory API on real shared memory: the zero-copy reader and the seed's writers.

The reader maps a segment read-only once, caches the mapping (bounded, dropped when the owner
retires the segment) and returns read-only ndarray views over the payload. The layout and
naming live in `segment`. image_meta keys: `width`, `height`, `color_space` ("RGB", "BGR",
"GRAY"), `timestamp_ms`, `camera_id`, `shm_seq` (must equal the header's sequence number when
present) and `encoding` ("raw", "jpeg", "png"; must match the header when present).
"""

from __future__ import annotations

import atexit
import contextlib
import io
import itertools
import mmap
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from . import legacy_frames
from . import segment as seg
from .errors import IMAGE_LOAD_FAILED, ImageLoadError
from .imagefile import FILE_FORMATS, decode_image
from .logger import StructuredLogger

ATTACH_CACHE_SIZE = 8
# The header stores width and height as uint32; no segment can hold a frame past these bounds,
# so a meta beyond them is refused before anything (even the seed's zero image) is sized by it.
MAX_SIDE = 2**32 - 1
MAX_FRAME_PIXELS = 2**32
STRICT_ENV = "PROC_STRICT_IMAGES"
_COLOR_SPACES = ("RGB", "BGR", "GRAY")

_log = StructuredLogger()


class _LoadFailure(Exception):
    """Internal: why an image could not be produced (cause is a short machine-readable word)."""

    def __init__(self, cause: str, detail: str) -> None:
        super().__init__(detail)
        self.cause = cause
        self.detail = detail


class _NoSegment(_LoadFailure):
    """Internal: no segment of ours has that name (a legacy frame file may stand in)."""


class _AttachCache:
    """Read-only mappings by segment name, least recently used evicted beyond `capacity`."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._maps: OrderedDict[str, mmap.mmap] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str) -> tuple[mmap.mmap, bool]:
        """Return (mapping, fresh); fresh is True when it was attached by this call."""
        with self._lock:
            self._drop_retired()
            mapping = self._maps.get(name)
            if mapping is not None:
                self._maps.move_to_end(name)
                return mapping, False
            try:
                mapping = seg.attach_segment_readonly(name)
            except FileNotFoundError:
                raise _NoSegment("segment_missing", f"no shared-memory segment {name}") from None
            except (OSError, ValueError) as exc:
                raise _LoadFailure("segment_missing", f"cannot attach {name}: {exc}") from None
            self._maps[name] = mapping
            while len(self._maps) > self.capacity:
                _, old = self._maps.popitem(last=False)
                _close_mapping(old)
            return mapping, True

    def invalidate(self, name: str) -> None:
        """Forget the mapping of `name` (views already handed out keep it alive until freed)."""
        with self._lock:
            mapping = self._maps.pop(name, None)
            if mapping is not None:
                _close_mapping(mapping)

    def clear(self) -> None:
        """Forget every mapping."""
        with self._lock:
            while self._maps:
                _, mapping = self._maps.popitem()
                _close_mapping(mapping)

    def names(self) -> list[str]:
        """Names currently cached (for tests and diagnostics)."""
        with self._lock:
            return list(self._maps)

    def _drop_retired(self) -> None:
        stale = [name for name, mapping in self._maps.items() if seg.is_retired(mapping)]
        for name in stale:
            _close_mapping(self._maps.pop(name))


def _close_mapping(mapping: mmap.mmap) -> None:
    # A view still held by the algorithm pins the mapping; it unmaps when that view is freed.
    with contextlib.suppress(BufferError):
        mapping.close()


_cache = _AttachCache(ATTACH_CACHE_SIZE)


def prefetch(shared_mem_id: str) -> bool:
    """Attach the segment behind `shared_mem_id` now, so the algorithm's read is a cache hit.

    False when there is no such segment (or it cannot be attached): the read reports that.
    """
    try:
        _cache.get(seg.segment_name_for_id(shared_mem_id))
    except (_LoadFailure, OSError, ValueError):
        return False
    return True


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
    mapping, fresh = _cache.get(name)
    try:
        return _image_from(mapping, name, meta, width, height)
    except _LoadFailure:
        if fresh:
            raise
    # The cached mapping may belong to a segment that was unlinked and recreated under the same
    # name without being retired (its owner crashed): look once more at what the name holds now.
    _cache.invalidate(name)
    mapping, _ = _cache.get(name)
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
    if color_space not in _COLOR_SPACES:
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


# ---- seed writers: one segment per id, owned (and unlinked at exit) by the writing process ----


@dataclass
class _Owned:
    shm: SharedMemory
    pid: int


_owned: dict[str, _Owned] = {}
_owned_lock = threading.Lock()
_seq = itertools.count(1)
_atexit_registered = False


def _owned_segment(name: str, size: int) -> SharedMemory:
    """Return a segment of at least `size` bytes that this process owns under `name`."""
    global _atexit_registered
    current = _owned.get(name)
    if current is not None and current.pid == os.getpid() and current.shm.size >= size:
        return current.shm
    if current is not None:
        del _owned[name]
        if current.pid == os.getpid():
            seg.retire_and_unlink(current.shm)
    try:
        shm = seg.create_segment(name, size)
    except FileExistsError:
        # Writing an id replaces what another writer left under it, never a live owner's slot.
        if not _discard_by_name(name):
            raise FileExistsError(
                f"shared memory {name!r} belongs to live process "
                f"{seg.owner_pid_from_name(name)}; write under another id"
            ) from None
        shm = seg.create_segment(name, size)
    _owned[name] = _Owned(shm, os.getpid())
    if not _atexit_registered:
        atexit.register(_unlink_owned_at_exit)
        _atexit_registered = True
    return shm


def _discard_by_name(name: str) -> bool:
    """Retire and unlink a segment this process does not own; False if absent or protected."""
    owner = seg.owner_pid_from_name(name)
    if owner is not None and owner != os.getpid() and seg.pid_alive(owner):
        # A Runner's slot: only its owner may unlink it (contract section 7).
        _log.warning("refusing to remove a live owner's shared memory", segment=name, owner=owner)
        return False
    try:
        other = seg.attach_segment(name)
    except FileNotFoundError:
        return False
    with contextlib.suppress(Exception):
        seg.mark_retired(other.buf)
    seg.close_quietly(other)
    return seg.unlink_segment(name)


def _unlink_owned_at_exit() -> None:
    with _owned_lock:
        for name, owned in list(_owned.items()):
            if owned.pid != os.getpid():
                continue  # inherited through fork: the parent owns it
            retired = True
            with contextlib.suppress(Exception):
                retired = seg.is_retired(owned.shm.buf)
            if not retired:  # still ours; a retired one was replaced by another writer
                seg.retire_and_unlink(owned.shm)
            else:
                seg.close_quietly(owned.shm)
            del _owned[name]


def write_image_array_to_shared_memory(
    shared_mem_id: str, image_array: np.ndarray
) -> dict[str, Any]:
    """Write an H x W (x 1|3|4) array, taken as RGB, into a segment named after `shared_mem_id`.

    Another process can read it with `read_image_from_shared_memory`. Returns the image_meta to
    pass along (width, height, color_space, encoding, shm_seq).
    """
    array = np.asarray(image_array)
    if array.ndim == 2:
        height, width, channels = array.shape[0], array.shape[1], 1
    elif array.ndim == 3 and array.shape[2] in (1, 3, 4):
        height, width, channels = array.shape
    else:
        raise ValueError(f"image_array must be H x W or H x W x 1|3|4, got shape {array.shape}")
    if height <= 0 or width <= 0:
        raise ValueError("image_array must not be empty")
    seg.dtype_code(array.dtype)
    name = seg.segment_name_for_id(shared_mem_id)
    with _owned_lock:
        shm = _owned_segment(name, seg.HEADER_SIZE + array.nbytes)
        seg.set_sequence(shm.buf, 0)
        target = seg.payload_array(shm.buf, (height, width, channels), array.dtype)
        np.copyto(target, array.reshape(height, width, channels))
        del target
        seq = next(_seq)
        seg.write_header(
            shm.buf,
            seq=seq,
            encoding=seg.ENCODING_RAW,
            dtype=array.dtype,
            height=height,
            width=width,
            channels=channels,
            payload_size=array.nbytes,
        )
    return {
        "width": width,
        "height": height,
        "color_space": "GRAY" if channels == 1 else "RGB",
        "encoding": "raw",
        "shm_seq": seq,
    }


def _sniff_encoding(data: bytes) -> int:
    if data[:3] == b"\xff\xd8\xff":
        return seg.ENCODING_JPEG
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return seg.ENCODING_PNG
    return seg.ENCODING_OTHER


def dev_write_image_to_shared_memory(shared_mem_id: str, image_bytes: bytes) -> dict[str, Any]:
    """Store encoded image bytes (JPEG, PNG, or another Pillow-readable file) under an id.

    Returns the image_meta to pass along; width/height are 0 when the bytes are unreadable (the
    reader then returns None with a warning, as the seed did).
    """
    if isinstance(image_bytes, np.ndarray):
        return write_image_array_to_shared_memory(shared_mem_id, image_bytes)
    if not isinstance(image_bytes, (bytes, bytearray, memoryview)):
        raise TypeError("image_bytes must be bytes")
    data = bytes(image_bytes)
    encoding = _sniff_encoding(data)
    width = height = 0
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception:
        width = height = 0
    name = seg.segment_name_for_id(shared_mem_id)
    with _owned_lock:
        shm = _owned_segment(name, seg.HEADER_SIZE + max(len(data), 1))
        seg.set_sequence(shm.buf, 0)
        buf = shm.buf
        assert buf is not None
        buf[seg.HEADER_SIZE : seg.HEADER_SIZE + len(data)] = data
        seq = next(_seq)
        seg.write_header(
            shm.buf,
            seq=seq,
            encoding=encoding,
            height=height,
            width=width,
            channels=3,
            payload_size=len(data),
        )
    return {
        "width": width,
        "height": height,
        "color_space": "RGB",
        "encoding": seg.ENCODING_NAMES[encoding],
        "shm_seq": seq,
    }


def dev_clear_shared_memory(shared_mem_id: str) -> bool:
    """Unlink the segment of `shared_mem_id`; False when there was none."""
    name = seg.segment_name_for_id(shared_mem_id)
    with _owned_lock:
        owned = _owned.pop(name, None)
        if owned is not None and owned.pid == os.getpid() and not seg.is_retired(owned.shm.buf):
            seg.retire_and_unlink(owned.shm)
            removed = True
        else:
            if owned is not None and owned.pid == os.getpid():
                seg.close_quietly(owned.shm)
            removed = _discard_by_name(name)
    _cache.invalidate(name)
    return removed


def clear_attach_cache() -> None:
    """Drop every cached read-only mapping of this process."""
    _cache.clear()


def cached_segment_names() -> list[str]:
    """Names of the segments this process has mapped for reading (diagnostics and tests)."""
    return _cache.names()
