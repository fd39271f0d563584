"""Issue 16 item 8: overlays draw Chinese labels, a verdict banner and a legend at any size.

Real fonts, real drawing: the font the overlay finds (the `overlay` extra's Noto Sans CJK in
this checkout) must draw two different ideographs differently where Pillow's default font draws
the same box for both; the banner must be there, in the verdict's colour, at 1920x1200 and at
20 MP, with text that grows with the image.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageFont

from procvision_runner.overlay import BANNER, COLORS, draw_overlay, verdict
from procvision_runner.overlay_font import draws_cjk, font_choice, load_font, render_text

GREY = 90


def _outcome(label: str, status: str = "NG", reason: str = "螺丝缺失") -> dict:
    data: dict = {
        "result_status": status,
        "defect_rects": [{"x": 600, "y": 400, "width": 200, "height": 150, "label": label}],
        "position_rects": [{"x": 500, "y": 300, "width": 800, "height": 600, "label": "主板"}],
    }
    if status == "NG":
        data["ng_reason"] = reason
    return {
        "step_index": 1,
        "pre_execute": {"status": "OK"},
        "execute": {"status": "OK", "data": data},
    }


def _default_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def test_the_overlay_font_draws_chinese_where_the_default_font_draws_tofu() -> None:
    choice = font_choice()
    assert choice.path is not None, f"no CJK font found ({choice}): install '.[overlay]'"
    font = load_font(32)
    assert draws_cjk(font)
    assert render_text(font, "划痕").tobytes() != render_text(font, "裂纹").tobytes()
    # what overlays drew before: Pillow's default font has no ideographs, so every one is a box
    default = _default_font(32)
    assert not draws_cjk(default)
    assert render_text(default, "划痕").tobytes() == render_text(default, "裂纹").tobytes()


def _label_area(canvas: Image.Image, banner: int) -> np.ndarray:
    # the caption sits just above the defect rect (x 600.., y 400 in image coordinates)
    pixels = np.asarray(canvas)
    top = banner + 400
    return pixels[top - 120 : top, 600:900]


def test_two_chinese_labels_give_two_different_captions() -> None:
    image = np.full((1200, 1920, 3), GREY, np.uint8)
    first = draw_overlay(image, [_outcome("划痕")])
    second = draw_overlay(image, [_outcome("裂纹")])
    banner = first.height - 1200
    a, b = _label_area(first, banner), _label_area(second, banner)
    assert (a == np.array(COLORS["defect_rects"], np.uint8)).all(axis=-1).any()  # a caption box
    assert (a == 255).all(axis=-1).sum() > 50  # white text on it
    assert not np.array_equal(a, b)


def _banner_rows(canvas: Image.Image, colour: tuple[int, int, int]) -> int:
    """Rows from the top whose left half is mostly the banner colour."""
    pixels = np.asarray(canvas)
    rows = 0
    for row in pixels:
        half = row[: len(row) // 2]
        if (half == np.array(colour, np.uint8)).all(axis=-1).mean() < 0.5:
            break
        rows += 1
    return rows


def _text_height(canvas: Image.Image, rows: int) -> int:
    """Height of the white text's ink in the banner's left third (the verdict and reason)."""
    strip = np.asarray(canvas)[:rows, : canvas.width // 3]
    ink = np.where((strip == 255).all(axis=-1).any(axis=1))[0]
    return int(ink[-1] - ink[0] + 1) if len(ink) else 0


@pytest.mark.parametrize(
    ("status", "colour"), [("NG", BANNER["NG"]), ("OK", BANNER["OK"])], ids=["NG", "OK"]
)
def test_the_banner_is_there_and_readable_at_1920x1200_and_20mp(status: str, colour: tuple) -> None:
    sizes = {}
    for width, height in ((1920, 1200), (5472, 3648)):  # a 20 MP industrial camera
        image = np.full((height, width, 3), GREY, np.uint8)
        canvas = draw_overlay(image, [_outcome("划痕", status)])
        banner = canvas.height - height
        assert canvas.width == width and banner > 0  # the banner sits above: no pixel hidden
        assert (np.asarray(canvas)[-50:, -50:] == GREY).all()  # the image, under no rect
        rows = _banner_rows(canvas, colour)
        assert rows >= banner * 0.9, (rows, banner)
        text = _text_height(canvas, rows)
        sizes[width] = (banner, text)
        # legend swatches at the right: one of each rect colour inside the banner
        right = np.asarray(canvas)[:banner, width // 2 :]
        for key in ("defect_rects", "position_rects", "calibration_rects"):
            assert (right == np.array(COLORS[key], np.uint8)).all(axis=-1).any(), key
    small, large = sizes[1920], sizes[5472]
    assert small[1] >= 20, sizes  # text a person reads on a 1920-wide screen
    assert large[0] > 2.5 * small[0] and large[1] > 2.5 * small[1], sizes  # scales with the image


def test_the_verdict_is_the_worst_step() -> None:
    ok, ng = _outcome("a", "OK"), _outcome("b", "NG", "划痕")
    failed = {
        "step_index": 2,
        "execute": {"status": "ERROR", "error_code": "1005", "message": "timeout"},
    }
    assert verdict([ok]) == ("OK", "")
    assert verdict([ok, ng]) == ("NG", "划痕")
    assert verdict([ng, failed]) == ("ERROR", "1005 timeout")


def test_without_a_cjk_font_the_overlay_falls_back_and_says_so_once(tmp_path) -> None:
    # A process that finds no CJK font: the wheel hidden, no fontconfig or system font, and
    # PROCVISION_OVERLAY_FONT naming a real font without ideographs (Pillow's own Latin font).
    # It still draws, with Pillow's default font, and says so one time.
    default = ImageFont.load_default(20)
    if not hasattr(default, "font_bytes"):
        pytest.skip("this Pillow has no TrueType default font")
    latin = tmp_path / "latin.ttf"
    latin.write_bytes(default.font_bytes)
    probe = """
import sys, numpy as np
sys.modules["noto_cjk_sans_otc"] = None  # the overlay extra, as if not installed
import procvision_runner.overlay_font as f
f.SYSTEM_FONTS = ()
f._fontconfig_font = lambda: None
from procvision_runner.overlay import draw_overlay
for _ in range(3):
    canvas = draw_overlay(np.zeros((120, 160, 3), np.uint8), [])
print(f.font_choice().source, canvas.size)
"""
    env = {**os.environ, "PROCVISION_OVERLAY_FONT": str(latin)}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "pillow-default"
    assert done.stderr.count("no font that draws Chinese") == 1, done.stderr
    assert "procvision-runner[overlay]" in done.stderr
