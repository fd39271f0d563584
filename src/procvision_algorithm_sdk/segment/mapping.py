"""Segments as OS objects: create (space reserved), attach, read-only map, unlink, close.

None of these register with multiprocessing's resource tracker: a tracker would unlink the
segment when *this* process exits (a reader would destroy the Runner's segment).
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import sys
import threading
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from .layout import mark_retired

try:  # POSIX only; Windows named mappings vanish with their last handle instead
    import _posixshmem
except ImportError:  # pragma: no cover - Windows
    _posixshmem = None

_USE_TRACK_ARG = sys.version_info >= (3, 13)
_track_lock = threading.Lock()


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


def prefault(buf: Any) -> None:
    """Touch every page of a fresh segment so the first frame does not pay the page faults."""
    pages = np.frombuffer(buf, dtype=np.uint8)
    try:
        pages[:: mmap.PAGESIZE] = 0
    finally:
        del pages
