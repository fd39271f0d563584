"""A frame buffer leased from the Runner (`RunnerClient.lease`): map, write, commit, release."""

from __future__ import annotations

import itertools
from typing import Any, Protocol

import numpy as np

from procvision_algorithm_sdk import segment as seg

__all__ = ["FrameBuffer", "LeaseOwner"]


class LeaseOwner(Protocol):
    """What a buffer needs of its client: giving the lease back."""

    def _release_lease(self, lease_id: str) -> None: ...


class FrameBuffer:
    """A leased shared-memory frame buffer: fill `array` (or `write()`), `commit()`, inspect."""

    def __init__(self, client: LeaseOwner, description: dict[str, Any]) -> None:
        self.description = description
        self.lease_id: str = description["lease_id"]
        self.height: int = description["height"]
        self.width: int = description["width"]
        self.channels: int = description["channels"]
        self._client = client
        self._shm: Any = seg.attach_segment(description["segment"])
        shape = (self.height, self.width, self.channels)
        self._array: np.ndarray | None = seg.payload_array(self._shm.buf, shape, np.uint8)
        self._seqs = itertools.count(1)
        self.seq = 0
        self.busy = False

    @property
    def segment(self) -> str:
        """The name of the leased segment."""
        return str(self.description["segment"])

    @property
    def array(self) -> np.ndarray:
        """A writable H x W x C view of the segment's payload."""
        if self._array is None:
            raise RuntimeError(f"lease {self.lease_id} was released")
        return self._array

    def write(self, frame: np.ndarray) -> int:
        """Copy `frame` into the buffer and commit it; returns the committed sequence number."""
        array = np.asarray(frame)
        if array.dtype != np.uint8:
            raise ValueError(f"frames are uint8, not {array.dtype}")
        target = self.array
        if array.ndim == 2:
            array = array[:, :, None]
        if array.shape != target.shape:
            raise ValueError(f"frame shape {array.shape} does not fit lease {target.shape}")
        seg.set_sequence(self._shm.buf, 0)  # a reader never sees a half-written frame as whole
        np.copyto(target, array)
        return self.commit()

    def commit(self) -> int:
        """Publish what was written into `array` under a fresh sequence number."""
        self.seq = next(self._seqs)
        seg.set_sequence(self._shm.buf, self.seq)
        return self.seq

    def close(self) -> None:
        """Drop this process's mapping (the Runner unlinks the segment)."""
        self._array = None
        if self._shm is not None:
            seg.close_quietly(self._shm)
            self._shm = None

    def release(self) -> None:
        """Give the lease back to the Runner and unmap it."""
        self.close()
        self._client._release_lease(self.lease_id)
