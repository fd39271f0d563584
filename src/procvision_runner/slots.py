"""The Runner's writer side of shared memory: a ring of pre-allocated, reused segments.

Each worker gets one `SlotRing`. A frame is copied once into a free slot, the slot's name and the
returned image_meta go into the `call` frame, and the slot is released when the result is back.
Segments are created once, pre-faulted, reused for every frame and replaced by a larger one only
when a larger frame arrives. The ring is the only owner of its segments and unlinks them on
`close()` (or when it is garbage-collected / the process exits normally).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import mmap
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from procvision_algorithm_sdk import segment as seg

_GRANULE = 64 * 1024
_HUGE_PAGE = 2 * 1024 * 1024
_sweep_lock = threading.Lock()
_swept = False
_log = logging.getLogger("procvision.runner")  # the server's one log (service.logsetup)


def startup_sweep(force: bool = False) -> list[str]:
    """Unlink segments whose owner process is gone; runs once per process unless `force`."""
    global _swept
    with _sweep_lock:
        if _swept and not force:
            return []
        _swept = True
        removed = seg.sweep_stale_segments()
    if removed:
        _log.info(
            "removed stale shared-memory segments",
            extra={"segments": removed, "count": len(removed)},
        )
    return removed


def _segment_size(payload_bytes: int) -> int:
    total = seg.HEADER_SIZE + max(payload_bytes, 1)
    granule = _HUGE_PAGE if total > _HUGE_PAGE else _GRANULE
    return -(-total // granule) * granule


def _advise_huge_pages(shm: Any) -> None:
    """Ask for huge pages on large segments (honoured where shmem THP is "advise" or better).

    Copying a frame into 4 KiB pages costs up to 3x a copy into huge pages on the benchmark box.
    """
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    mapping = getattr(shm, "_mmap", None)
    if advice is None or mapping is None or shm.size < _HUGE_PAGE:
        return
    with contextlib.suppress(OSError, ValueError):
        mapping.madvise(advice)


def _release_segments(states: list[_SlotState]) -> None:
    for state in states:
        if state.shm is not None:
            seg.retire_and_unlink(state.shm)
            state.shm = None


@dataclass
class _SlotState:
    shm: Any = None  # SharedMemory; Any because its typing differs across Python versions
    lease: int = 0  # 0 = free

    @property
    def capacity(self) -> int:
        return 0 if self.shm is None else self.shm.size - seg.HEADER_SIZE


class Slot:
    """A leased slot: one segment the holder fills, sends by name, then releases."""

    def __init__(self, ring: SlotRing, state: _SlotState, lease: int) -> None:
        self._ring = ring
        self._state = state
        self._lease = lease
        self._pending: tuple[tuple[int, int, int], np.dtype[Any]] | None = None

    @property
    def name(self) -> str:
        """The segment name: the `shared_mem_id` to put in the call frame."""
        shm = self._state.shm
        if shm is None:
            raise RuntimeError("slot ring was closed")
        return str(shm.name)

    @property
    def capacity(self) -> int:
        """Payload bytes the slot holds without growing."""
        self._live()
        return self._state.capacity

    @property
    def leased(self) -> bool:
        """Whether this handle still holds the slot."""
        return self._state.lease == self._lease

    def _live(self) -> Any:
        if self._state.lease != self._lease or self._state.shm is None:
            raise RuntimeError("slot was released or its ring was closed")
        return self._state.shm

    def _ensure(self, nbytes: int) -> Any:
        self._live()
        if nbytes > self._state.capacity:
            self._ring._grow(self._state, self._lease, nbytes)
        return self._live()

    def write_frame(
        self, frame: np.ndarray, color_space: str = "RGB", **meta: Any
    ) -> dict[str, Any]:
        """Copy `frame` (H x W or H x W x 1|3|4) into the slot once; return the image_meta."""
        array = np.asarray(frame)
        height, width, channels = seg.frame_geometry(array.shape)
        space = seg.color_space_for(channels, color_space)
        seg.dtype_code(array.dtype)
        shm = self._ensure(array.nbytes)
        seq = self._ring._next_seq()
        seg.write_raw(shm.buf, array, seq)
        return self._meta(seg.frame_meta(width, height, space, seg.ENCODING_RAW, seq), meta)

    def write_encoded(
        self, data: bytes, encoding: str, width: int, height: int, **meta: Any
    ) -> dict[str, Any]:
        """Copy encoded image bytes ("jpeg" or "png") into the slot; return the image_meta."""
        code = seg.ENCODING_CODES.get(str(encoding).lower())
        if code is None or code == seg.ENCODING_RAW:
            raise ValueError(f"unknown image encoding {encoding!r}")
        payload = memoryview(data).cast("B")
        shm = self._ensure(len(payload))
        seq = self._ring._next_seq()
        seg.write_encoded(shm.buf, payload, code, int(width), int(height), seq)
        return self._meta(seg.frame_meta(int(width), int(height), "RGB", code, seq), meta)

    def payload_view(self, shape: tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray:
        """Return a writable array over the slot's payload to fill in place; then `commit()`."""
        geometry = seg.frame_geometry(tuple(int(n) for n in shape))
        dt = np.dtype(dtype)
        seg.dtype_code(dt)
        height, width, channels = geometry
        shm = self._ensure(height * width * channels * dt.itemsize)
        view = seg.open_raw(shm.buf, geometry, dt)
        self._pending = (geometry, dt)
        return view if len(shape) == 3 else view[:, :, 0]

    def commit(self, color_space: str = "RGB", **meta: Any) -> dict[str, Any]:
        """Publish what was written through `payload_view()`; return the image_meta to send."""
        if self._pending is None:
            raise RuntimeError("commit() without payload_view()")
        (height, width, channels), dtype = self._pending
        self._pending = None
        space = seg.color_space_for(channels, color_space)
        seq = self._ring._next_seq()
        seg.commit_raw(self._live().buf, (height, width, channels), dtype, seq)
        return self._meta(seg.frame_meta(width, height, space, seg.ENCODING_RAW, seq), meta)

    def _meta(self, frame: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        image_meta: dict[str, Any] = {"timestamp_ms": int(time.time() * 1000)}
        image_meta.update(extra)
        image_meta.update(frame)
        return image_meta

    def release(self) -> None:
        """Give the slot back to the ring (idempotent; a stale handle does nothing)."""
        self._ring._release(self._state, self._lease)

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class SlotRing:
    """`count` reusable segments of one owner (one worker); thread-safe."""

    def __init__(self, owner: str, count: int = 2, initial_bytes: int = 0) -> None:
        if count < 1:
            raise ValueError("a SlotRing needs at least one slot")
        startup_sweep()
        self.owner = owner
        self._cond = threading.Condition()
        self._states = [_SlotState() for _ in range(count)]
        self._leases = itertools.count(1)
        self._seqs = itertools.count(1)
        self._closed = False
        self._finalizer = weakref.finalize(self, _release_segments, self._states)
        if initial_bytes > 0:
            try:
                for state in self._states:
                    state.shm = self._new_segment(initial_bytes)
            except BaseException:
                self.close()
                raise

    @property
    def count(self) -> int:
        """Number of slots."""
        return len(self._states)

    @property
    def names(self) -> list[str]:
        """Names of the segments currently allocated."""
        with self._cond:
            return [str(s.shm.name) for s in self._states if s.shm is not None]

    @property
    def bytes_allocated(self) -> int:
        """Bytes of shared memory this ring holds."""
        with self._cond:
            return sum(s.shm.size for s in self._states if s.shm is not None)

    @property
    def bytes_in_use(self) -> int:
        """Bytes of shared memory in slots currently leased."""
        with self._cond:
            return sum(s.shm.size for s in self._states if s.shm is not None and s.lease)

    @property
    def free_slots(self) -> int:
        """Slots not leased right now."""
        with self._cond:
            return sum(1 for s in self._states if not s.lease)

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return self._closed

    def acquire(self, nbytes: int, timeout: float) -> Slot:
        """Lease a free slot holding `nbytes` (grown if needed); TimeoutError at the deadline."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError(f"slot ring of {self.owner} is closed")
                free = [s for s in self._states if not s.lease]
                if free:
                    fitting = [s for s in free if s.capacity >= nbytes]
                    state = fitting[0] if fitting else max(free, key=lambda s: s.capacity)
                    lease = next(self._leases)
                    state.lease = lease
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"no free shared-memory slot for {self.owner} within {timeout:.3f}s"
                    )
                self._cond.wait(remaining)
            try:
                if state.capacity < nbytes:
                    self._replace(state, nbytes)
            except BaseException:
                state.lease = 0
                self._cond.notify()
                raise
        return Slot(self, state, lease)

    def reclaim_all(self) -> int:
        """Free every leased slot (its worker died); returns how many were leased."""
        with self._cond:
            leased = [s for s in self._states if s.lease]
            for state in leased:
                state.lease = 0
                if state.shm is not None:
                    seg.set_sequence(state.shm.buf, 0)
            self._cond.notify_all()
            return len(leased)

    def close(self) -> None:
        """Unlink every segment of the ring; later acquire() raises."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._finalizer()

    def __enter__(self) -> SlotRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_seq(self) -> int:
        return next(self._seqs)

    def _new_segment(self, payload_bytes: int) -> Any:
        size = _segment_size(payload_bytes)
        while True:
            try:
                shm = seg.create_segment(seg.new_segment_name(), size)
                break
            except FileExistsError:
                continue
        try:
            _advise_huge_pages(shm)
            seg.prefault(shm.buf)
            seg.write_header(shm.buf, seq=0)
        except BaseException:
            seg.retire_and_unlink(shm)
            raise
        return shm

    def _replace(self, state: _SlotState, nbytes: int) -> None:
        """Swap in a larger segment (caller holds the lock); the old one is retired and unlinked."""
        fresh = self._new_segment(nbytes)
        old, state.shm = state.shm, fresh
        if old is not None:
            seg.retire_and_unlink(old)

    def _grow(self, state: _SlotState, lease: int, nbytes: int) -> None:
        with self._cond:
            if state.lease != lease or self._closed:
                raise RuntimeError("slot was released or its ring was closed")
            if state.capacity < nbytes:
                self._replace(state, nbytes)

    def _release(self, state: _SlotState, lease: int) -> None:
        with self._cond:
            if state.lease == lease:
                state.lease = 0
                self._cond.notify()


__all__ = ["Slot", "SlotRing", "startup_sweep"]
