"""Draw a step's results on its image: rects with labels, a verdict banner and a legend.

The banner (OK green, NG red with ng_reason, ERROR grey with code and message) and the legend
(one swatch per rect kind, with counts) sit in a strip above the image, so no pixel of the image
is hidden and the rect coordinates stay those of the result. Text size and line widths scale with
the image: the same overlay reads at 1920x1200 and at 20 MP. Text is drawn with a font that
draws Chinese (overlay_font).
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .overlay_font import load_font

__all__ = ["COLORS", "draw_overlay", "save_overlay", "verdict"]

COLORS = {
    "defect_rects": (255, 0, 0),
    "position_rects": (0, 200, 0),
    "calibration_rects": (0, 80, 255),
}
LEGEND = {
    "defect_rects": "defect",
    "position_rects": "position",
    "calibration_rects": "calibration",
}
BANNER = {"OK": (0, 150, 60), "NG": (200, 20, 20), "ERROR": (90, 90, 90)}
WHITE = (255, 255, 255)


@functools.lru_cache(maxsize=8)
def _font(size: int) -> Any:
    return load_font(size)


def _rects(result: dict[str, Any] | None, key: str) -> list[dict[str, Any]]:
    data = (result or {}).get("data")
    rects = data.get(key) if isinstance(data, dict) else None
    return [r for r in rects if isinstance(r, dict)] if isinstance(rects, list) else []


def _caption(rect: dict[str, Any]) -> str:
    parts = []
    if isinstance(rect.get("label"), str):
        parts.append(rect["label"])
    score = rect.get("score")
    if isinstance(score, (int, float)) and not isinstance(score, bool):
        parts.append(f"{float(score):.2f}")
    return " ".join(parts)


def _box(rect: dict[str, Any]) -> tuple[int, int, int, int] | None:
    try:
        x, y = int(rect["x"]), int(rect["y"])
        w, h = int(rect["width"]), int(rect["height"])
    except (KeyError, TypeError, ValueError):
        return None
    return (x, y, x + w - 1, y + h - 1) if w > 0 and h > 0 else None


def _one_verdict(outcome: dict[str, Any]) -> tuple[str, str]:
    for phase in ("pre_execute", "execute"):
        result = outcome.get(phase)
        if isinstance(result, dict) and result.get("status") != "OK":
            code = result.get("error_code") or ""
            return "ERROR", f"{code} {result.get('message') or phase + ' failed'}".strip()
    execute = outcome.get("execute")
    data = execute.get("data") if isinstance(execute, dict) else None
    if not isinstance(data, dict):
        return "ERROR", "no execute result"
    if data.get("result_status") == "NG":
        return "NG", str(data.get("ng_reason") or "")
    return "OK", ""


def verdict(outcomes: list[dict[str, Any]]) -> tuple[str, str]:
    """("OK" | "NG" | "ERROR", the reason) over every step drawn: the worst one wins."""
    found = [_one_verdict(o) for o in outcomes] or [("ERROR", "no result")]
    for status in ("ERROR", "NG"):
        reasons = [r for s, r in found if s == status and r]
        if any(s == status for s, _ in found):
            return status, "; ".join(dict.fromkeys(reasons))
    return "OK", ""


def _kinds(outcomes: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    drawn: list[tuple[str, list[dict[str, Any]]]] = []
    for key, phase in (
        ("calibration_rects", "pre_execute"),
        ("position_rects", "execute"),
        ("defect_rects", "execute"),
    ):
        drawn.append((key, [r for o in outcomes for r in _rects(o.get(phase), key)]))
    return drawn


def _fit(draw: Any, text: str, font: Any, width: float) -> str:
    """`text`, shortened with an ellipsis to fit `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


class _Scale:
    """Sizes in pixels for an image whose shorter side is `side` (1200 at 1920x1200)."""

    def __init__(self, width: int, height: int) -> None:
        side = max(1, min(width, height))
        self.text = max(14, round(side * 0.022))  # 26 px at 1200, 80 px at 3648
        self.banner_text = round(self.text * 1.5)
        self.line = max(2, round(side / 400))
        self.pad = max(4, self.text // 3)
        self.banner = self.banner_text + 2 * self.pad


def draw_overlay(image: np.ndarray, outcomes: list[dict[str, Any]]) -> Any:
    """Return a PIL image: a banner strip (verdict, legend) above `image` with the rects drawn."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
    scale = _Scale(*picture.size)
    canvas = Image.new("RGB", (picture.width, picture.height + scale.banner), WHITE)
    canvas.paste(picture, (0, scale.banner))
    draw = ImageDraw.Draw(canvas)
    kinds = _kinds(outcomes)
    _draw_banner(draw, canvas.width, scale, verdict(outcomes), kinds)
    font = _font(scale.text)
    for key, rects in kinds:
        for rect in rects:
            box = _box(rect)
            if box is None:
                continue
            x0, y0, x1, y1 = box[0], box[1] + scale.banner, box[2], box[3] + scale.banner
            draw.rectangle([x0, y0, x1, y1], outline=COLORS[key], width=scale.line)
            caption = _caption(rect)
            if caption:
                _draw_caption(draw, caption, font, (x0, y0), COLORS[key], scale)
    return canvas


def _text_left_mid(draw: Any, at: tuple[int, int], text: str, font: Any) -> None:
    """Draw `text` starting at x, centred vertically on y (works for bitmap fonts too)."""
    left, top, _, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text((at[0] - left, at[1] - (top + bottom) // 2), text, WHITE, font=font)


def _draw_caption(
    draw: Any, caption: str, font: Any, at: tuple[int, int], color: tuple, scale: _Scale
) -> None:
    x, y = at
    left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
    height = bottom - top + scale.pad
    y_top = max(scale.banner, y - height)  # above the rect, or inside it at the image's top
    draw.rectangle([x, y_top, x + right - left + scale.pad, y_top + height], fill=color)
    draw.text((x + scale.pad // 2 - left, y_top + scale.pad // 2 - top), caption, WHITE, font=font)


def _draw_banner(
    draw: Any,
    width: int,
    scale: _Scale,
    judged: tuple[str, str],
    kinds: list[tuple[str, list[dict[str, Any]]]],
) -> None:
    status, reason = judged
    draw.rectangle([0, 0, width - 1, scale.banner - 1], fill=BANNER[status])
    small = _font(scale.text)
    # The legend at the right: a swatch and "kind n" per rect kind.
    swatch = scale.text
    x = width - scale.pad
    for key, rects in reversed(kinds):
        label = f"{LEGEND[key]} {len(rects)}"
        x -= round(draw.textlength(label, font=small))
        _text_left_mid(draw, (x, scale.banner // 2), label, small)
        x -= scale.pad + swatch
        top = (scale.banner - swatch) // 2
        draw.rectangle([x, top, x + swatch, top + swatch], fill=COLORS[key], outline=WHITE)
        x -= 2 * scale.pad
    big = _font(scale.banner_text)
    text = status + (f"  {reason}" if reason else "")
    text = _fit(draw, text, big, max(0, x - 2 * scale.pad))
    _text_left_mid(draw, (scale.pad, scale.banner // 2), text, big)


def save_overlay(image: np.ndarray, outcomes: list[dict[str, Any]], out_path: str | Path) -> None:
    """Write the overlay as PNG, atomically (temp file in the same folder, then rename)."""
    canvas = draw_overlay(image, outcomes)
    out = Path(out_path)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            canvas.save(f, format="PNG")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
