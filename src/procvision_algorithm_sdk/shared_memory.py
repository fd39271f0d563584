"""Seed shared-memory API. Placeholder until the shared-memory transport lands (issue 3)."""

from __future__ import annotations

from typing import Any

import numpy as np


def read_image_from_shared_memory(shared_mem_id: str, image_meta: dict[str, Any]) -> Any:
    """Return the image behind `shared_mem_id` as an H x W x 3 uint8 RGB array."""
    raise NotImplementedError("shared-memory transport not built yet")


def write_image_array_to_shared_memory(shared_mem_id: str, image_array: np.ndarray) -> None:
    """Write an array into a segment named after `shared_mem_id`."""
    raise NotImplementedError("shared-memory transport not built yet")
