"""Legacy frame files: how the original SDK (0.0.6 and later) and its hosts handed frames over.

A `shared_mem_id` of that era names a file `<dir>/<safe id>.npy` (an `np.save`d array) or
`<dir>/<safe id>.bin` (encoded image bytes), where `<dir>` is `$PROC_SHM_DIR` or
`<tempfile.gettempdir()>/procvision_dev_shm` and `<safe id>` is the id with every character
outside `[A-Za-z0-9._-]` replaced by `_`. This module only finds and opens such files; the
reader in `shared_memory` applies the same geometry and colour rules as to its own segments.
Nothing in the SDK writes them; the Runner writes them only for a worker that keeps the
original SDK (`install --keep-bundled-sdk`).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import stat
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import segment as seg
from .errors import ImageLoadError
from .imagefile import FILE_FORMATS, decode_image
from .logger import StructuredLogger

DIR_ENV = "PROC_SHM_DIR"
DEFAULT_DIR_NAME = "procvision_dev_shm"
NPY_SUFFIX = ".npy"
BIN_SUFFIX = ".bin"
# An encoded frame larger than this many bytes per pixel of the meta's size is not a frame of
# that size (16-bit RGBA PNG stored uncompressed is 8), plus room for headers and metadata.
_BIN_BYTES_PER_PIXEL = 8
_BIN_OVERHEAD = 1 << 20
_NPY_HEADER_LIMIT = 10000

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_log = StructuredLogger()
_announce_lock = threading.Lock()
_announced = False


class LegacyFrameError(Exception):
    """A legacy frame file exists but cannot be used (cause: a short machine-readable word)."""

    def __init__(self, cause: str, detail: str) -> None:
        super().__init__(detail)
        self.cause = cause
        self.detail = detail


@dataclass(frozen=True)
class LegacyFrame:
    """An opened legacy frame: `pixels` is H x W x C as stored (npy) or decoded RGB (bin)."""

    path: Path
    kind: str  # "npy" or "bin"
    pixels: np.ndarray


def legacy_dir(environ: Any = None) -> Path:
    """The directory legacy frame files live in: $PROC_SHM_DIR or <tmp>/procvision_dev_shm."""
    env = os.environ if environ is None else environ
    configured = env.get(DIR_ENV)
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / DEFAULT_DIR_NAME


def safe_id(shared_mem_id: str) -> str:
    """The file stem of an id: every character outside [A-Za-z0-9._-] replaced by `_`."""
    return _UNSAFE.sub("_", str(shared_mem_id))


def legacy_path(directory: Path, shared_mem_id: str, suffix: str) -> Path:
    """`<directory>/<safe id><suffix>`: never outside `directory` (the stem has no separator)."""
    stem = safe_id(shared_mem_id)
    if not stem or stem in (".", ".."):
        raise ValueError(f"shared_mem_id {shared_mem_id!r} cannot name a legacy frame file")
    return directory / (stem + suffix)


def open_legacy_frame(shared_mem_id: str, width: int, height: int) -> LegacyFrame | None:
    """Open the legacy file of `shared_mem_id` (.npy first), bounded by width x height.

    None when there is no such file; LegacyFrameError when one exists but is not a frame of
    that size. A .npy is memory-mapped read-only (no copy); a .bin is decoded.
    """
    try:
        npy = legacy_path(legacy_dir(), shared_mem_id, NPY_SUFFIX)
    except ValueError:
        return None
    bin_path = npy.with_suffix(BIN_SUFFIX)
    for path, opener in ((npy, _open_npy), (bin_path, _open_bin)):
        fd = _open_regular(path)
        if fd is None:
            continue
        try:
            frame = opener(path, fd, width, height)
        finally:
            os.close(fd)
        _announce(frame)
        return frame
    return None


def _open_regular(path: Path) -> int | None:
    """An fd on `path` if it is a regular file (a symlink planted in a shared tmp dir is not)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LegacyFrameError(
            "segment_missing", f"cannot open legacy frame {path}: {exc}"
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LegacyFrameError("segment_missing", f"legacy frame {path} is not a regular file")
    return fd


def _open_npy(path: Path, fd: int, width: int, height: int) -> LegacyFrame:
    size = os.fstat(fd).st_size
    if size == 0:
        raise LegacyFrameError("payload_truncated", f"legacy frame {path} is empty")
    mapping = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    try:
        shape, fortran, dtype, offset = _npy_header(path, mapping)
        if len(shape) == 3 and shape[2] in (1, 3, 4):
            channels = shape[2]
        elif len(shape) == 2:
            channels = 1
        else:
            raise LegacyFrameError(
                "header_invalid", f"legacy frame {path} has shape {shape}, not H x W (x 1|3|4)"
            )
        if (shape[1], shape[0]) != (width, height):
            raise LegacyFrameError(
                "header_mismatch",
                f"image_meta says {width}x{height}, {path.name} holds {shape[1]}x{shape[0]}",
            )
        count = height * width * channels
        if offset + count * dtype.itemsize > size:
            raise LegacyFrameError("payload_truncated", f"{path.name} is shorter than its array")
        flat = np.frombuffer(mapping, dtype=dtype, count=count, offset=offset)
    except BaseException:
        with contextlib.suppress(BufferError):
            mapping.close()
        raise
    # The array holds the mapping (read-only; it unmaps when the array is freed).
    pixels = flat.reshape((height, width, channels), order="F" if fortran else "C")
    return LegacyFrame(path, "npy", pixels)


def _npy_header(path: Path, mapping: mmap.mmap) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, data offset) of an .npy file, its dtype checked."""
    import io

    fmt = np.lib.format
    stream = io.BytesIO(mapping[: min(len(mapping), _NPY_HEADER_LIMIT + 16)])
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, SyntaxError) as exc:
        raise LegacyFrameError(
            "header_invalid", f"{path.name} is not an .npy array: {exc}"
        ) from None
    try:
        seg.dtype_code(dtype)
    except (ValueError, TypeError):
        raise LegacyFrameError(
            "header_invalid", f"{path.name} holds dtype {dtype}, not a pixel type"
        ) from None
    return tuple(int(n) for n in shape), bool(fortran), np.dtype(dtype), stream.tell()


def _open_bin(path: Path, fd: int, width: int, height: int) -> LegacyFrame:
    limit = width * height * _BIN_BYTES_PER_PIXEL + _BIN_OVERHEAD
    size = os.fstat(fd).st_size
    if size > limit:
        raise LegacyFrameError(
            "size_mismatch", f"{path.name} has {size} bytes, too many for a {width}x{height} image"
        )
    with os.fdopen(os.dup(fd), "rb") as stream:
        data = stream.read(limit + 1)
    try:
        pixels = decode_image(data, formats=FILE_FORMATS, max_pixels=max(width * height, 1))
    except ImageLoadError as exc:
        raise LegacyFrameError("decode_failed", f"{path.name} not decodable: {exc}") from None
    return LegacyFrame(path, "bin", pixels)


def _announce(frame: LegacyFrame) -> None:
    """One debug line per process the first time a legacy file is used, never one per frame."""
    global _announced
    with _announce_lock:
        if _announced:
            return
        _announced = True
    _log.debug(
        "reading frames from legacy frame files (original SDK convention)",
        directory=str(frame.path.parent),
        kind=frame.kind,
    )
