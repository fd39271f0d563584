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
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from procvision_algorithm_sdk import segment as seg
from procvision_algorithm_sdk.errors import (
    INVALID_PARAMS,
    TIMEOUT,
    UNKNOWN_ERROR,
)

from .lease_frames import (
    FrameLease,
    LeaseError,
    Reserved,
    SharedFrame,
    check_frame,
    new_segment,
    segment_size,
)

LEASE_ID_PREFIX = "fl_"
CLIENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
_log = logging.getLogger("procvision.runner")  # the server's one log (service.logsetup)


@dataclass(frozen=True)
class LeaseLimits:
    """Bounds on what clients may hold (per client id and in total) and how long unused."""

    max_per_client: int = 8
    max_bytes_per_client: int = 1024**3
    max_total_bytes: int = 4 * 1024**3
    idle_s: float = 300.0
    reap_interval_s: float = 0.5
    max_dimension: int = 65_535


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
        size = segment_size(payload)
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
                lease_id, client, Reserved(size), height, width, channels, client_pid, 0.0, 0.0
            )
            placeholder.busy = True
            self._leases[lease_id] = placeholder
        try:
            shm = new_segment(size, height, width, channels)
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
        _log.debug(
            "frame lease created",
            extra={"lease_id": lease_id, "client": client, "segment": shm.name},
        )
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
            frame = check_frame(lease, seq, geometry)
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
        if lease is None or isinstance(lease.shm, Reserved):
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
            _log.info("frame leases reclaimed", extra={"lease_ids": [x.lease_id for x in gone]})
        return [x.lease_id for x in gone]

    def _reap_loop(self) -> None:
        while not self._stop.wait(self.limits.reap_interval_s):
            try:
                self.reap()
            except Exception as exc:  # the reaper must outlive a bad pass
                _log.error("lease reaping failed", extra={"error": f"{type(exc).__name__}: {exc}"})

    def close(self) -> None:
        """Unlink every leased segment and stop the reaper; idempotent."""
        with self._lock:
            self._closed = True
            leases = [x for x in self._leases.values() if not isinstance(x.shm, Reserved)]
            self._leases.clear()
        self._stop.set()
        if self._reaper is not threading.current_thread():
            self._reaper.join(10.0)
        for lease in leases:
            seg.retire_and_unlink(lease.shm)


__all__ = [
    "CLIENT_PATTERN",
    "FrameLease",
    "LeaseError",
    "LeaseLimits",
    "LeaseRegistry",
    "SharedFrame",
]
