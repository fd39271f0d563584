"""Draw the rects of run results on the input image (defects red, positions green,
calibration blue), with labels and scores."""

from __future__ import annotations

import os
from typing import Any

from procvision_algorithm_sdk.errors import UNKNOWN_ERROR

from ._common import CliError, load_image

COLORS = {
    "defect_rects": (255, 0, 0),
    "position_rects": (0, 200, 0),
    "calibration_rects": (0, 80, 255),
}


def _rects(result: dict[str, Any] | None, key: str) -> list[dict[str, Any]]:
    data = (result or {}).get("data")
    rects = data.get(key) if isinstance(data, dict) else None
    return [r for r in rects if isinstance(r, dict)] if isinstance(rects, list) else []


def _caption(rect: dict[str, Any]) -> str:
    parts = []
    if isinstance(rect.get("label"), str):
        parts.append(rect["label"])
    if isinstance(rect.get("score"), (int, float)) and not isinstance(rect.get("score"), bool):
        parts.append(f"{float(rect['score']):.2f}")
    return " ".join(parts)


def draw_overlay(image_path: str | os.PathLike[str], outcomes: list[dict[str, Any]]) -> Any:
    """Return a PIL image with every step's rects drawn on it."""
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(load_image(image_path))
    draw = ImageDraw.Draw(canvas)
    width = max(2, min(canvas.size) // 300)
    for outcome in outcomes:
        sources = [
            ("calibration_rects", outcome.get("pre_execute")),
            ("position_rects", outcome.get("execute")),
            ("defect_rects", outcome.get("execute")),
        ]
        for key, result in sources:
            color = COLORS[key]
            for rect in _rects(result, key):
                try:
                    x, y = int(rect["x"]), int(rect["y"])
                    w, h = int(rect["width"]), int(rect["height"])
                except (KeyError, TypeError, ValueError):
                    continue
                if w <= 0 or h <= 0:
                    continue
                draw.rectangle([x, y, x + w - 1, y + h - 1], outline=color, width=width)
                caption = _caption(rect)
                if caption:
                    box = draw.textbbox((x, y), caption)
                    top = max(0, y - (box[3] - box[1]) - 4)
                    draw.rectangle(
                        [x, top, x + box[2] - box[0] + 4, top + box[3] - box[1] + 4], fill=color
                    )
                    draw.text((x + 2, top + 1), caption, fill=(255, 255, 255))
    return canvas


def save_overlay(
    image_path: str | os.PathLike[str], outcomes: list[dict[str, Any]], out_path: str
) -> None:
    """Write the overlay as PNG (CliError if the file cannot be written)."""
    canvas = draw_overlay(image_path, outcomes)
    try:
        canvas.save(out_path, format="PNG")
    except OSError as exc:
        raise CliError(UNKNOWN_ERROR, f"cannot write overlay {out_path}: {exc}") from None
