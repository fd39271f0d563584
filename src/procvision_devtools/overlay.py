"""`run --save-overlay`: the station's overlay (procvision_runner.overlay) of an image file."""

from __future__ import annotations

import os
from typing import Any

from procvision_algorithm_sdk.errors import UNKNOWN_ERROR
from procvision_runner import overlay as _overlay
from procvision_runner.overlay import COLORS

from ._common import CliError, load_image

__all__ = ["COLORS", "draw_overlay", "save_overlay"]


def draw_overlay(image_path: str | os.PathLike[str], outcomes: list[dict[str, Any]]) -> Any:
    """Return a PIL image: the verdict banner and legend above the image, every step's rects."""
    return _overlay.draw_overlay(load_image(image_path), outcomes)


def save_overlay(
    image_path: str | os.PathLike[str], outcomes: list[dict[str, Any]], out_path: str
) -> None:
    """Write the overlay as PNG (CliError if the file cannot be written)."""
    try:
        _overlay.save_overlay(load_image(image_path), outcomes, out_path)
    except OSError as exc:
        raise CliError(UNKNOWN_ERROR, f"cannot write overlay {out_path}: {exc}") from None
