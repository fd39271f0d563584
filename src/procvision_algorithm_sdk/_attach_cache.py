"""The reader's attach cache: read-only mappings by segment name, and the public prefetch.

A mapping is kept (least recently used evicted beyond ATTACH_CACHE_SIZE) so a Runner's reused
slot is attached once; one whose owner retired the segment is dropped on the next lookup.
"""

from __future__ import annotations

import contextlib
import mmap
import threading
from collections import OrderedDict

from . import segment as seg

__all__ = [
    "ATTACH_CACHE_SIZE",
    "cache",
    "cached_segment_names",
    "clear_attach_cache",
    "prefetch",
]

ATTACH_CACHE_SIZE = 8


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


cache = _AttachCache(ATTACH_CACHE_SIZE)


def prefetch(shared_mem_id: str) -> bool:
    """Attach the segment behind `shared_mem_id` now, so the algorithm's read is a cache hit.

    False when there is no such segment (or it cannot be attached): the read reports that.
    """
    try:
        cache.get(seg.segment_name_for_id(shared_mem_id))
    except (_LoadFailure, OSError, ValueError):
        return False
    return True


def clear_attach_cache() -> None:
    """Drop every cached read-only mapping of this process."""
    cache.clear()


def cached_segment_names() -> list[str]:
    """Names of the segments this process has mapped for reading (diagnostics and tests)."""
    return cache.names()
