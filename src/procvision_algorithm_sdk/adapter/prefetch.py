"""Attach an image segment ahead of the algorithm's read (shared by both APIs' calls)."""

from __future__ import annotations


def prefetch_image(shared_mem_id: str) -> bool:
    """Attach the segment behind `shared_mem_id` so the algorithm's read is a cache hit."""
    try:
        from .. import shared_memory

        return shared_memory.prefetch(shared_mem_id)
    except Exception:
        # A missing segment is the algorithm's to report when it reads (seed behaviour).
        return False
