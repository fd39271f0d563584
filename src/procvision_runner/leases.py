"""Frame leases: Runner-owned shared-memory segments that a same-host client writes frames into.

A client asks for a buffer of one geometry (`LeaseRegistry.create`), maps the segment by name,
writes the pixels into its payload and commits by writing a non-zero sequence number into the
header (layout: `procvision_algorithm_sdk.segment`). An inspection names the lease instead of
carrying pixels; `checkout()` checks the header (geometry untouched, committed, the sequence
number the client meant) and hands the Runner a `SharedFrame`, which goes to the worker by name:
the worker reads that very segment, nothing is copied.

The registry is the only owner of the segments: it creates them (named with the Runner's pid, so
a crashed Runner's leftovers are swept like its slots), unlinks them on release, when they have
been idle too long, when the client process that asked for them is gone, and on close().
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from procvision_algorithm_sdk import segment as seg
from procvision_algorithm_sdk.errors import (
    IMAGE_LOAD_FAILED,
    INVALID_PARAMS,
    TIMEOUT,
    UNKNOWN_ERROR,
    ProcVisionError,
)
from procvision_algorithm_sdk.logger import StructuredLogger

LEASE_ID_PREFIX = "fl_"
CLIENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
_log = StructuredLogger()


class LeaseError(ProcVisionError):
    """A lease request or use the registry refuses; `status` is the HTTP status to answer."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message, error_code=error_code)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class LeaseLimits:
    """Bounds on what clients may hold (per client id and in total) and how long unused."""

    max_per_client: int = 8
    max_bytes_per_client: int = 1024**3
    max_total_bytes: int = 4 * 1024**3
    idle_s: float = 300.0
    reap_interval_s: float = 0.5
    max_dimension: int = 65_535


@dataclass(frozen=True)
class SharedFrame:
    """A committed frame already in a segment: what the Runner sends by name instead of copying."""

    name: str
    height: int
    width: int
    channels: int
    seq: int
    dtype: np.dtype[Any] = field(default_factory=lambda: np.dtype(np.uint8))

    @property
    def shape(self) -> tuple[int, ...]:
        """The frame's shape as an array would have it (H x W for one channel)."""
        if self.channels == 1:
            return (self.height, self.width)
        return (self.height, self.width, self.channels)

    @property
    def nbytes(self) -> int:
        """Payload bytes."""
        return self.height * self.width * self.channels * self.dtype.itemsize

    def image_meta(self, color_space: str, extra: dict[str, Any]) -> dict[str, Any]:
        """The image_meta of the call frame for this segment."""
        meta: dict[str, Any] = {"timestamp_ms": int(time.time() * 1000)}
        meta.update(extra)
        meta.update(
            width=self.width,
            height=self.height,
            color_space=color_space,
            encoding="raw",
            shm_seq=self.seq,
        )
        return meta


@dataclass
class FrameLease:
    """One leased segment and its bookkeeping (internal to the registry)."""

    lease_id: str
    client: str
    shm: Any  # SharedMemory
    height: int
    width: int
    channels: int
    client_pid: int | None
    created: float
    last_used: float
    busy: bool = False
    seq: int = 0  # the last sequence number an in-process writer committed

    @property
    def payload_size(self) -> int:
        """Bytes of one frame."""
        return self.height * self.width * self.channels

    @property
    def size(self) -> int:
        """Bytes of the whole segment (header + payload, rounded up)."""
        return int(self.shm.size)

    def describe(self, idle_s: float) -> dict[str, Any]:
        """What the client needs to map and fill the segment."""
        name = str(self.shm.name).lstrip("/")
        return {
            "lease_id": self.lease_id,
            "segment": name,
            "posix_name": "/" + name,
            "windows_name": name,
            "size": self.size,
            "header_size": seg.HEADER_SIZE,
            "payload_offset": seg.HEADER_SIZE,
            "payload_size": self.payload_size,
            "height": self.height,
            "width": self.width,
            "channels": self.channels,
            "dtype": "uint8",
            "layout_version": seg.LAYOUT_VERSION,
            "seq_offset": 8,
            "idle_timeout_s": idle_s,
        }


class LeaseRegistry:
    """Creates, checks out, releases and reaps frame leases; thread-safe."""

    def __init__(
        self,
        limits: LeaseLimits | None = None,
        *,
        pid_alive: Callable[[int], bool] = seg.pid_alive,
    ) -> None:
        self.limits = limits or LeaseLimits()
        self._pid_alive = pid_alive
        self._lock = threading.Lock()
        self._leases: dict[str, FrameLease] = {}
        self._closed = False
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap_loop, name="lease-reaper", daemon=True)
        self._reaper.start()

    # ------------------------------------------------------------------ queries

    def count(self, client: str | None = None) -> int:
        """Leases held (by one client, or in total)."""
        with self._lock:
            return sum(1 for x in self._leases.values() if client is None or x.client == client)

    def bytes_held(self, client: str | None = None) -> int:
        """Segment bytes held (by one client, or in total)."""
        with self._lock:
            return self._bytes(client)

    def ids(self, client: str) -> set[str]:
        """The lease ids one client holds."""
        with self._lock:
            return {x.lease_id for x in self._leases.values() if x.client == client}

    def names(self) -> list[str]:
        """Names of the segments of every live lease."""
        with self._lock:
            return [str(x.shm.name).lstrip("/") for x in self._leases.values()]

    def _bytes(self, client: str | None) -> int:
        return sum(x.size for x in self._leases.values() if client is None or x.client == client)

    # ------------------------------------------------------------------ lifecycle

    def create(
        self,
        client: str,
        height: int,
        width: int,
        channels: int,
        client_pid: int | None = None,
    ) -> dict[str, Any]:
        """Lease a segment for frames of this geometry; returns its description."""
        self._check_geometry(height, width, channels)
        payload = height * width * channels
        size = _segment_size(payload)
        with self._lock:
            if self._closed:
                raise LeaseError(503, UNKNOWN_ERROR, "the lease registry is closed")
            if sum(1 for x in self._leases.values() if x.client == client) >= (
                self.limits.max_per_client
            ):
                raise LeaseError(
                    429,
                    INVALID_PARAMS,
                    f"client {client} already holds {self.limits.max_per_client} leases "
                    "(release one, or reuse it for the next frame)",
                )
            if self._bytes(client) + size > self.limits.max_bytes_per_client:
                raise LeaseError(
                    429,
                    INVALID_PARAMS,
                    f"client {client} would hold more than "
                    f"{self.limits.max_bytes_per_client} bytes of leases",
                )
            if self._bytes(None) + size > self.limits.max_total_bytes:
                raise LeaseError(429, INVALID_PARAMS, "the Runner holds its maximum of lease bytes")
            lease_id = LEASE_ID_PREFIX + secrets.token_urlsafe(18)
            # Reserved under the lock so two creates cannot both pass the byte bound.
            placeholder = FrameLease(
                lease_id, client, _Reserved(size), height, width, channels, client_pid, 0.0, 0.0
            )
            placeholder.busy = True
            self._leases[lease_id] = placeholder
        try:
            shm = _new_segment(size, height, width, channels)
        except BaseException as exc:
            with self._lock:
                self._leases.pop(lease_id, None)
            if isinstance(exc, OSError):
                raise LeaseError(
                    507, UNKNOWN_ERROR, f"shared memory exhausted: cannot lease {size} bytes"
                ) from exc
            raise
        now = time.monotonic()
        lease = FrameLease(lease_id, client, shm, height, width, channels, client_pid, now, now)
        with self._lock:
            if self._closed:
                seg.retire_and_unlink(shm)
                raise LeaseError(503, UNKNOWN_ERROR, "the lease registry is closed")
            self._leases[lease_id] = lease
        _log.debug("frame lease created", lease_id=lease_id, client=client, segment=shm.name)
        return lease.describe(self.limits.idle_s)

    def describe(self, lease_id: str, client: str) -> dict[str, Any]:
        """The description of a lease this client holds."""
        with self._lock:
            lease = self._owned(lease_id, client)
            return lease.describe(self.limits.idle_s)

    def release(self, lease_id: str, client: str) -> None:
        """Give a lease back: its segment is unlinked (refused while a call uses it)."""
        with self._lock:
            lease = self._owned(lease_id, client)
            if lease.busy:
                raise LeaseError(409, TIMEOUT, f"lease {lease_id} is in use by a call")
            del self._leases[lease_id]
        seg.retire_and_unlink(lease.shm)

    @contextlib.contextmanager
    def checkout(
        self,
        lease_id: str,
        client: str,
        *,
        seq: int | None = None,
        geometry: tuple[int | None, int | None, int | None] = (None, None, None),
    ) -> Iterator[SharedFrame]:
        """Hold a lease for one call and yield the committed frame in it (checks the header)."""
        with self._lock:
            lease = self._owned(lease_id, client)
            if lease.busy:
                raise LeaseError(
                    409, TIMEOUT, f"lease {lease_id} is in use by another call (one at a time)"
                )
            frame = _check_frame(lease, seq, geometry)
            lease.busy = True
        try:
            yield frame
        finally:
            with self._lock:
                lease.busy = False
                lease.last_used = time.monotonic()

    @contextlib.contextmanager
    def writable(self, lease_id: str, client: str) -> Iterator[memoryview]:
        """Hold a lease for an in-process writer (the raw upload): yields its payload, commits.

        The frame is uncommitted (sequence number 0) while the block runs and stays so when
        the block raises; a normal exit commits it under the next sequence number.
        """
        with self._lock:
            lease = self._owned(lease_id, client)
            if lease.busy:
                raise LeaseError(409, TIMEOUT, f"lease {lease_id} is in use by another call")
            lease.busy = True
            seg.set_sequence(lease.shm.buf, 0)
        view = lease.shm.buf[seg.HEADER_SIZE : seg.HEADER_SIZE + lease.payload_size]
        try:
            yield view
            with self._lock:
                lease.seq += 1
                seg.set_sequence(lease.shm.buf, lease.seq)
        finally:
            view.release()
            with self._lock:
                lease.busy = False
                lease.last_used = time.monotonic()

    def _owned(self, lease_id: str, client: str) -> FrameLease:
        lease = self._leases.get(lease_id)
        if lease is None or isinstance(lease.shm, _Reserved):
            raise LeaseError(404, INVALID_PARAMS, f"no frame lease {lease_id!r}")
        if lease.client != client:
            raise LeaseError(403, INVALID_PARAMS, f"lease {lease_id} belongs to another client")
        return lease

    def _check_geometry(self, height: int, width: int, channels: int) -> None:
        top = self.limits.max_dimension
        for what, value in (("height", height), ("width", width)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
                raise LeaseError(422, INVALID_PARAMS, f"{what} must be an integer in 1..{top}")
        if channels not in (1, 3) or isinstance(channels, bool):
            raise LeaseError(422, INVALID_PARAMS, "channels must be 1 or 3")

    # ------------------------------------------------------------------ reaping

    def reap(self, now: float | None = None) -> list[str]:
        """Unlink idle leases and those of dead client processes; returns their lease ids."""
        at = time.monotonic() if now is None else now
        gone: list[FrameLease] = []
        with self._lock:
            for lease in list(self._leases.values()):
                if lease.busy:
                    continue
                idle = at - lease.last_used > self.limits.idle_s
                dead = lease.client_pid is not None and not self._pid_alive(lease.client_pid)
                if idle or dead:
                    del self._leases[lease.lease_id]
                    gone.append(lease)
        for lease in gone:
            seg.retire_and_unlink(lease.shm)
        if gone:
            _log.info("frame leases reclaimed", lease_ids=[x.lease_id for x in gone])
        return [x.lease_id for x in gone]

    def _reap_loop(self) -> None:
        while not self._stop.wait(self.limits.reap_interval_s):
            try:
                self.reap()
            except Exception as exc:  # the reaper must outlive a bad pass
                _log.error("lease reaping failed", error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        """Unlink every leased segment and stop the reaper; idempotent."""
        with self._lock:
            self._closed = True
            leases = [x for x in self._leases.values() if not isinstance(x.shm, _Reserved)]
            self._leases.clear()
        self._stop.set()
        if self._reaper is not threading.current_thread():
            self._reaper.join(10.0)
        for lease in leases:
            seg.retire_and_unlink(lease.shm)


@dataclass(frozen=True)
class _Reserved:
    """Stands in for a segment being created, so its bytes count against the bounds."""

    size: int
    name: str = ""


_GRANULE = 64 * 1024


def _segment_size(payload: int) -> int:
    total = seg.HEADER_SIZE + max(payload, 1)
    return -(-total // _GRANULE) * _GRANULE


def _new_segment(size: int, height: int, width: int, channels: int) -> Any:
    while True:
        try:
            shm = seg.create_segment(seg.new_segment_name(), size)
            break
        except FileExistsError:
            continue
    try:
        seg.write_header(
            shm.buf,
            seq=0,
            height=height,
            width=width,
            channels=channels,
            payload_size=height * width * channels,
        )
    except BaseException:
        seg.retire_and_unlink(shm)
        raise
    return shm


def _check_frame(
    lease: FrameLease, seq: int | None, geometry: tuple[int | None, int | None, int | None]
) -> SharedFrame:
    """Refuse a frame whose header is not the lease's or not committed (caller holds the lock)."""
    want = (lease.height, lease.width, lease.channels)
    for what, asked, have in zip(("height", "width", "channels"), geometry, want, strict=True):
        if asked is not None and asked != have:
            raise LeaseError(
                422,
                INVALID_PARAMS,
                f"{what} {asked} does not match lease {lease.lease_id} "
                f"({lease.height}x{lease.width}x{lease.channels})",
            )
    header = seg.read_header(lease.shm.buf)
    if (
        not header.valid
        or header.encoding != seg.ENCODING_RAW
        or header.dtype_code != seg.DTYPE_CODES["uint8"]
        or (header.height, header.width, header.channels) != want
        or header.payload_size != lease.payload_size
    ):
        raise LeaseError(
            422,
            IMAGE_LOAD_FAILED,
            f"the header of lease {lease.lease_id} was altered: only the payload and the "
            "sequence number are the client's to write",
        )
    if header.seq == 0:
        raise LeaseError(
            409,
            IMAGE_LOAD_FAILED,
            f"lease {lease.lease_id} holds no committed frame (sequence number 0: write the "
            "pixels, then commit a non-zero sequence number)",
        )
    if seq is not None and seq != header.seq:
        raise LeaseError(
            409,
            IMAGE_LOAD_FAILED,
            f"lease {lease.lease_id} holds frame {header.seq}, not the committed frame {seq}",
        )
    return SharedFrame(
        str(lease.shm.name).lstrip("/"), lease.height, lease.width, lease.channels, header.seq
    )


__all__ = [
    "CLIENT_PATTERN",
    "FrameLease",
    "LeaseError",
    "LeaseLimits",
    "LeaseRegistry",
    "SharedFrame",
]
