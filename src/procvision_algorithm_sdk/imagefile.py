"""Decoding image files (PNG, JPEG, BMP, TIFF) into the SDK's frame shape: H x W x 3 uint8 RGB.

What a pixel says is never changed silently. 8-bit modes become RGB as they are (grey is
repeated, a palette looked up, alpha dropped). Deeper samples are scaled to 8 bits by the bit
depth their container declares: ``v >> (bits - 8)``, so the container's full range maps onto
0..255 (a 16-bit PNG: ``v >> 8``; a TIFF with BitsPerSample 12: ``v >> 4``). 12-bit data
stored in a 16-bit container must fill it (MSB-aligned, as the PNG spec requires); data left in
the low 12 bits stays dark, because guessing from the pixel values would change a dark image.
Modes ``I`` and ``F`` carry no bit depth of their own: they are taken as 16-bit data and refused
when a value lies outside 0..65535 (or is not finite). TIFF: 8/16-bit mono and RGB only (12-bit
mono too), one page. Everything else (CMYK, YCbCr, LAB, negative or non-finite samples,
multi-frame files, RGBA or palette TIFF) is refused with ImageLoadError (1002).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ImageLoadError

FILE_FORMATS = ("PNG", "JPEG", "BMP", "TIFF")
# 8-bit modes whose conversion to RGB keeps every pixel's value (alpha is dropped)
_EIGHT_BIT_MODES = frozenset({"1", "L", "P", "RGB", "RGBA", "RGBX", "LA", "PA"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_WIDE_MODES = frozenset({"I", "F"})  # no bit depth of their own: taken as 16-bit data
_TIFF_MODES = frozenset({"L", "RGB", "I", "F"} | _SIXTEEN_BIT_MODES)
_TIFF_BITS_PER_SAMPLE = 258


def decode_image(
    source: bytes | bytearray | memoryview | str | os.PathLike[str],
    *,
    formats: tuple[str, ...] = FILE_FORMATS,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Decode image bytes or a file into a contiguous RGB array; ImageLoadError (1002) otherwise."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, (bytes, bytearray, memoryview)):
        what = "the image data"
        if not len(source):
            raise ImageLoadError(f"{what} is empty")
        stream: io.BytesIO | Path = io.BytesIO(bytes(source))
    else:
        stream = Path(source)
        what = str(stream)
        if not stream.is_file():
            raise ImageLoadError(f"image not found: {what}")
    try:
        # Only the decoders asked for: no exotic Pillow plugin ever parses untrusted bytes.
        with Image.open(stream, formats=formats) as img:
            width, height = img.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageLoadError(
                    f"{what}: {width}x{height} pixels is more than the limit of {max_pixels}"
                )
            array = _to_rgb8(img, what)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(f"{what} is not a {'/'.join(formats)} image") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageLoadError(f"{what} cannot be decoded: {exc}") from None
    if array.ndim != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageLoadError(f"{what} decoded to an empty image")
    return np.ascontiguousarray(array)


def _to_rgb8(img: Any, what: str) -> np.ndarray:
    """The opened image as H x W x 3 uint8 by the rules of this module's docstring."""
    mode, fmt = str(img.mode), str(img.format or "")
    frames = int(getattr(img, "n_frames", 1) or 1)
    if frames > 1:
        raise ImageLoadError(f"{what} holds {frames} frames; send one frame per file")
    if fmt == "TIFF" and mode not in _TIFF_MODES:
        raise ImageLoadError(
            f"{what} is a TIFF of mode {mode}; accepted are 8/16-bit mono and RGB (no change "
            "of colour model or alpha is made silently)"
        )
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8)
    if mode in _EIGHT_BIT_MODES:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    if mode in _SIXTEEN_BIT_MODES:
        bits = _declared_bits(img, fmt)
        mono = np.asarray(img).astype(np.uint16, copy=False) >> (bits - 8)
    elif mode in _WIDE_MODES:
        mono = _wide_as_16bit(np.asarray(img), mode, what) >> 8
    else:
        raise ImageLoadError(
            f"{what} has image mode {mode}, which cannot become RGB without changing its "
            "pixels (accepted: 8-bit grey/palette/RGB(A), 16-bit grey, 8/16-bit RGB)"
        )
    return np.repeat(mono.astype(np.uint8)[:, :, None], 3, axis=2)


def _declared_bits(img: Any, fmt: str) -> int:
    """The container's bits per sample for a 16-bit-mode image (12 for a 12-bit TIFF)."""
    if fmt == "TIFF":
        declared = img.tag_v2.get(_TIFF_BITS_PER_SAMPLE)
        if isinstance(declared, tuple):
            declared = declared[0] if declared else None
        if isinstance(declared, int) and 8 < declared <= 16:
            return declared
    return 16


def _wide_as_16bit(values: np.ndarray, mode: str, what: str) -> np.ndarray:
    """Mode I/F samples as uint16, refused (1002) unless all lie in 0..65535."""
    if values.size and mode == "F" and not np.isfinite(values).all():
        raise ImageLoadError(f"{what} (mode F) has samples that are not finite numbers")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if low < 0 or high > 65535:
        raise ImageLoadError(
            f"{what} (mode {mode}) has samples in {low:g}..{high:g}; only 16-bit data "
            "(0..65535) can be scaled to 8 bits without guessing"
        )
    return values.astype(np.uint16)
