"""The font overlays are drawn with: one that draws Chinese, found once per process.

Where it looks, in order: `PROCVISION_OVERLAY_FONT` (a .ttf/.otf/.ttc path), the
`noto-cjk-sans-otc` wheel (the `overlay` extra of procvision-runner), then the system's fonts
(fontconfig's choice for Chinese, then the usual files of Debian's fonts-noto-cjk and
fonts-wqy-*, Windows and macOS). A candidate counts only if it really draws CJK (two different
ideographs render differently: a font without them draws the same "tofu" box for both). With
none, Pillow's default font draws Latin text and the process says once, on stderr, what to
install.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["FontChoice", "draws_cjk", "font_choice", "load_font", "render_text"]

log = logging.getLogger(__name__)

ENV_VAR = "PROCVISION_OVERLAY_FONT"
SYSTEM_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Medium.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/simhei.ttf",
    "C:/Windows/Fonts/simsun.ttc",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/STHeiti Medium.ttc",
)
# Two common ideographs: a font that has them renders them differently.
_PROBE = ("中", "国")
_HINT = (
    "overlays: no font that draws Chinese was found, so CJK labels will show as boxes; "
    "install procvision-runner[overlay] (or Debian's fonts-noto-cjk), or point "
    f"{ENV_VAR} at a .ttf/.ttc/.otf file"
)


class FontChoice:
    """A font file that draws CJK (`path`, face `index` in a collection), or None: Pillow's."""

    def __init__(self, path: str | None, source: str, index: int = 0) -> None:
        self.path, self.source, self.index = path, source, index

    def __repr__(self) -> str:
        return f"FontChoice({self.path!r}, {self.source!r}, index={self.index})"


def render_text(font: Any, text: str) -> Any:
    """`text` drawn white on black in `font`, cropped to its ink (a PIL "L" image)."""
    from PIL import Image, ImageDraw

    left, top, right, bottom = font.getbbox(text)
    image = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
    ImageDraw.Draw(image).text((-left, -top), text, font=font, fill=255)
    return image


def draws_cjk(font: Any) -> bool:
    """True when `font` renders two different ideographs differently (no tofu)."""
    first, second = (render_text(font, ch) for ch in _PROBE)
    inked = first.getbbox() is not None and second.getbbox() is not None
    return inked and (first.size != second.size or first.tobytes() != second.tobytes())


def _simplified_face(path: str) -> int:
    """The face of a collection (.ttc) made for Simplified Chinese ("... SC"), else 0."""
    from PIL import ImageFont

    if not path.lower().endswith(".ttc"):
        return 0
    for index in range(16):
        try:
            family = ImageFont.truetype(path, 12, index=index).getname()[0] or ""
        except (OSError, ValueError):
            break
        if family.endswith(" SC") or " SC " in family:
            return index
    return 0


def _usable(path: str) -> FontChoice | None:
    from PIL import ImageFont

    try:
        index = _simplified_face(path)
        return (
            FontChoice(path, "", index) if draws_cjk(ImageFont.truetype(path, 24, index)) else None
        )
    except (OSError, ValueError):
        return None


def _wheel_font() -> str | None:
    try:
        from noto_cjk_sans_otc import FONT_PATH  # the `overlay` extra
    except ImportError:
        return None
    return str(FONT_PATH)


def _fontconfig_font() -> str | None:
    fc_match = shutil.which("fc-match")
    if fc_match is None:
        return None
    try:
        done = subprocess.run(
            [fc_match, "-f", "%{file}", ":lang=zh-cn"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def _candidates() -> Iterator[tuple[str | None, str]]:
    # Lazily: fontconfig runs a program, and only when nothing before it was found.
    yield os.environ.get(ENV_VAR) or None, ENV_VAR
    yield _wheel_font(), "noto-cjk-sans-otc"
    yield _fontconfig_font(), "fontconfig"
    for path in SYSTEM_FONTS:
        yield path, "system"


@functools.lru_cache(maxsize=1)
def font_choice() -> FontChoice:
    """The font overlays use in this process (looked for once; says once when there is none)."""
    for path, source in _candidates():
        found = _usable(path) if path and Path(path).is_file() else None
        if found is not None:
            found.source = source
            return found
    log.warning(_HINT)
    return FontChoice(None, "pillow-default")


def load_font(size: int, choice: FontChoice | None = None) -> Any:
    """An ImageFont of `size` pixels from the chosen font (Pillow's default font without one)."""
    from PIL import ImageFont

    choice = choice or font_choice()
    if choice.path is not None:
        return ImageFont.truetype(choice.path, size, index=choice.index)
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow < 10.1: one bitmap size only
        return ImageFont.load_default()
