"""What a lease is made of: the segment record, the committed frame it yields, its header check.

`leases.LeaseRegistry` owns the bookkeeping; this module holds the pieces it hands out and the
one check of a client-written header (only the payload and the sequence number are the
client's to write).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from procvision_algorithm_sdk import segment as seg
from procvision_algorithm_sdk.errors import IMAGE_LOAD_FAILED, INVALID_PARAMS, ProcVisionError

__all__ = [
    "FrameLease",
    "LeaseError",
    "Reserved",
    "SharedFrame",
    "check_frame",
    "new_segment",
    "segment_size",
]


class LeaseError(ProcVisionError):
    """A lease request or use the registry refuses; `status` is the HTTP status to answer."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message, error_code=error_code)
        self.status = status
        self.message = message


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


@dataclass(frozen=True)
class Reserved:
    """Stands in for a segment being created, so its bytes count against the bounds."""

    size: int
    name: str = ""


_GRANULE = 64 * 1024


def segment_size(payload: int) -> int:
    total = seg.HEADER_SIZE + max(payload, 1)
    return -(-total // _GRANULE) * _GRANULE


def new_segment(size: int, height: int, width: int, channels: int) -> Any:
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


def check_frame(
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
