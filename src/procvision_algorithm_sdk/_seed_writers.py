"""The seed API's writers: one segment per id, owned (and unlinked at exit) by the writing process.

The pixels go in through `segment.write_raw` / `segment.write_encoded`, the same writer the
Runner's slots use.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import itertools
import os
import threading
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from . import segment as seg
from ._attach_cache import cache
from .logger import StructuredLogger

__all__ = [
    "dev_clear_shared_memory",
    "dev_write_image_to_shared_memory",
    "write_image_array_to_shared_memory",
]

_log = StructuredLogger()


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
    try:
        seg.frame_geometry(array.shape)  # refused before any segment is made for it
    except ValueError as exc:
        raise ValueError(f"image_array: {exc}") from None
    seg.dtype_code(array.dtype)
    name = seg.segment_name_for_id(shared_mem_id)
    with _owned_lock:
        shm = _owned_segment(name, seg.HEADER_SIZE + array.nbytes)
        seq = next(_seq)
        height, width, channels = seg.write_raw(shm.buf, array, seq)
    return seg.frame_meta(width, height, seg.color_space_for(channels), seg.ENCODING_RAW, seq)


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
        seq = next(_seq)
        seg.write_encoded(shm.buf, data, encoding, width, height, seq)
    return seg.frame_meta(width, height, "RGB", encoding, seq)


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
    cache.invalidate(name)
    return removed
