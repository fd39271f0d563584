"""Attach an image segment ahead of the algorithm's read (shared by both APIs' calls)."""

from __future__ import annotations


def prefetch_image(shared_mem_id: str) -> bool:
    """Attach the segment behind `shared_mem_id` so the algorithm's read is a cache hit."""
    try:
        from .. import shared_memory

        prefetch = getattr(shared_memory, "prefetch", None)
        if callable(prefetch):
            return bool(prefetch(shared_mem_id))
        # Until shared_memory exposes prefetch(), warm its attach cache the same way a read does.
        from .. import segment

        shared_memory._cache.get(segment.segment_name_for_id(shared_mem_id))
        return True
    except Exception:
        # A missing segment is the algorithm's to report when it reads (seed behaviour).
        return False
