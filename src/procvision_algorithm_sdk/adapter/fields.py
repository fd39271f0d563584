"""Reading a call frame's fields: step indexes, counts and image dimensions, never a bool."""

from __future__ import annotations

from typing import Any

__all__ = ["as_dim", "as_step"]


def as_step(value: Any) -> int | None:
    """An int from a frame field (an int or a digit string; never a bool), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def as_dim(value: Any) -> int | None:
    """A positive image dimension from a frame field, else None."""
    step = as_step(value)
    return step if step is not None and step > 0 else None
