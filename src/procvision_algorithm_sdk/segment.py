"""The shared-memory segment layout, segment naming, untracked create/attach and the stale sweep.

Both sides import this module: the Runner's `SlotRing` writes segments, the SDK's
`read_image_from_shared_memory` reads them. A segment is a 64-byte header followed by the payload:

    offset size  field
    0      4     magic b"PVSM"
    4      2     layout version (1)
    6      1     encoding (0 raw, 1 jpeg, 2 png, 3 other Pillow-readable container)
    7      1     dtype code (raw payloads; see DTYPE_CODES)
    8      8     sequence number (0 while a write is in progress)
    16     4     height
    20     4     width
    24     4     channels
    28     4     owner pid (the process that created the segment and will unlink it)
    32     8     payload size in bytes
    40     4     flags (bit 0: retired, the owner unlinked it and will not write it again)
    44     20    reserved, zero

All integers little-endian. The payload starts at HEADER_SIZE (64, cache-line aligned).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import mmap
import os
import re
import secrets
import struct
import sys
import threading
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

try:  # POSIX only; Windows named mappings vanish with their last handle instead
    import _posixshmem
except ImportError:  # pragma: no cover - Windows
    _posixshmem = None

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
_SHM_DIR = "/dev/shm"

_USE_TRACK_ARG = sys.version_info >= (3, 13)
_track_lock = threading.Lock()


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


def _posix_name(name: str) -> str:
    return name if name.startswith("/") else "/" + name


@contextlib.contextmanager
def _untracked() -> Any:
    """Suppress resource_tracker.register while a SharedMemory is constructed (Python < 3.13).

    Registration would start the tracker process, which unlinks the segment when *this* process
    exits (a reader would destroy the Runner's segment) and prints leak warnings.
    """
    if _USE_TRACK_ARG or os.name == "nt":
        yield
        return
    with _track_lock:
        original = resource_tracker.register

        def _skip(name: str, rtype: str) -> None:
            if rtype != "shared_memory":
                original(name, rtype)

        setattr(resource_tracker, "register", _skip)  # noqa: B010
        try:
            yield
        finally:
            setattr(resource_tracker, "register", original)  # noqa: B010


def create_segment(name: str, size: int) -> SharedMemory:
    """Create a new segment of `size` bytes that no resource tracker knows about.

    The space is reserved up front where the platform allows it, so a full /dev/shm is an
    OSError (ENOSPC) here rather than a SIGBUS on the first write into the mapping.
    """
    if size <= 0:
        raise ValueError("segment size must be positive")
    with _untracked():
        if _USE_TRACK_ARG:
            shm = SharedMemory(name=name, create=True, size=size, track=False)  # type: ignore[call-arg]
        else:
            shm = SharedMemory(name=name, create=True, size=size)
    try:
        _reserve(shm, size)
    except BaseException:
        unlink_segment(shm.name)
        close_quietly(shm)
        raise
    return shm


# posix_fallocate errors that mean "cannot reserve on this filesystem", not "no space".
_NO_RESERVE = {errno.EINVAL, errno.ENOSYS, getattr(errno, "EOPNOTSUPP", errno.EINVAL)}


def _reserve(shm: SharedMemory, size: int) -> None:
    """Back every byte of a fresh segment (ftruncate alone leaves it sparse)."""
    fallocate = getattr(os, "posix_fallocate", None)
    fd = getattr(shm, "_fd", -1)
    if fallocate is None or not isinstance(fd, int) or fd < 0:
        return  # Windows and macOS: no sparse POSIX shm object to reserve
    try:
        fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in _NO_RESERVE:
            return
        raise OSError(
            exc.errno,
            f"shared memory exhausted: cannot reserve {size} bytes for segment {shm.name} "
            f"({os.strerror(exc.errno) if exc.errno else exc})",
        ) from exc


def attach_segment(name: str) -> SharedMemory:
    """Attach read-write to an existing segment without registering it with a resource tracker."""
    with _untracked():
        if _USE_TRACK_ARG:
            return SharedMemory(name=name, create=False, track=False)  # type: ignore[call-arg]
        return SharedMemory(name=name, create=False)


def attach_segment_readonly(name: str) -> mmap.mmap:
    """Map an existing segment read-only: writes through it fault, so a reader cannot corrupt it.

    Raises FileNotFoundError when no segment has that name.
    """
    if _posixshmem is not None:
        fd = _posixshmem.shm_open(_posix_name(name), os.O_RDONLY, mode=0o600)
        try:
            size = os.fstat(fd).st_size
            if size <= 0:
                raise FileNotFoundError(f"segment {name} is empty")
            if sys.version_info >= (3, 13):
                return mmap.mmap(fd, size, access=mmap.ACCESS_READ, trackfd=False)  # type: ignore[call-arg]
            return mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
    # Windows: the rw attach only learns the size and keeps the mapping alive meanwhile.
    probe = attach_segment(name)  # pragma: no cover - Windows
    try:  # pragma: no cover - Windows
        return mmap.mmap(-1, probe.size, tagname=name, access=mmap.ACCESS_READ)  # type: ignore[call-arg,unused-ignore]
    finally:  # pragma: no cover - Windows
        probe.close()


def unlink_segment(name: str) -> bool:
    """Remove the name of a segment (POSIX); False when it was already gone.

    Never goes through SharedMemory.unlink, which would message a resource tracker before 3.13.
    On Windows a mapping disappears with its last handle, so this only reports True.
    """
    if _posixshmem is None:  # pragma: no cover - Windows
        return True
    try:
        _posixshmem.shm_unlink(_posix_name(name))
        return True
    except FileNotFoundError:
        return False


def retire_and_unlink(shm: SharedMemory) -> None:
    """Flag an owned segment retired, unlink its name and close our mapping (best effort)."""
    with contextlib.suppress(Exception):
        mark_retired(shm.buf)
    unlink_segment(shm.name)
    close_quietly(shm)


def close_quietly(shm: SharedMemory) -> bool:
    """Close our mapping; False when a caller still holds a view into it (GC unmaps it later)."""
    try:
        shm.close()
        return True
    except BufferError:
        pass
    # SharedMemory.close() refuses while views exist, and its __del__ would complain later: let
    # the views keep the mapping alive on their own and detach it from this object.
    with contextlib.suppress(AttributeError, OSError):
        for attribute in ("_buf", "_mmap"):
            setattr(shm, attribute, None)
        fd = getattr(shm, "_fd", -1)
        if fd >= 0:
            setattr(shm, "_fd", -1)  # noqa: B010
            os.close(fd)
    return False


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (a process of another user counts as alive)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def _header_owner(name: str) -> int | None:
    """Owner pid from the header of an id-derived segment, None when the header is not ours."""
    try:
        mapping = attach_segment_readonly(name)
    except (OSError, ValueError):
        return None
    try:
        header = read_header(mapping)
        return header.owner_pid if header.valid else None
    except ValueError:
        return None
    finally:
        mapping.close()


def sweep_stale_segments() -> list[str]:
    """Unlink our segments whose owner process is gone; return their names.

    Linux only (lists /dev/shm); elsewhere a no-op returning []. The owner pid comes from the
    name of SlotRing segments and from the header of id-derived (seed API) segments. A segment
    whose header is not written yet is left alone.
    """
    if not os.path.isdir(_SHM_DIR) or _posixshmem is None:
        return []
    try:
        entries = os.listdir(_SHM_DIR)
    except OSError:
        return []
    removed: list[str] = []
    for name in entries:
        if not name.startswith(SEGMENT_PREFIX):
            continue
        pid = owner_pid_from_name(name)
        if pid is None and _ID_NAME.match(name):
            pid = _header_owner(name)
        if pid is None or pid_alive(pid):
            continue
        with contextlib.suppress(OSError):
            shm = attach_segment(name)
            with contextlib.suppress(Exception):
                mark_retired(shm.buf)
            close_quietly(shm)
        if unlink_segment(name):
            removed.append(name)
    return removed


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


def prefault(buf: Any) -> None:
    """Touch every page of a fresh segment so the first frame does not pay the page faults."""
    pages = np.frombuffer(buf, dtype=np.uint8)
    try:
        pages[:: mmap.PAGESIZE] = 0
    finally:
        del pages
