"""Decoding image files (PNG, JPEG, BMP) into the SDK's frame shape: H x W x 3 uint8 RGB."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from .errors import ImageLoadError

FILE_FORMATS = ("PNG", "JPEG", "BMP")


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
            array = np.asarray(img if img.mode == "RGB" else img.convert("RGB"), dtype=np.uint8)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(f"{what} is not a {'/'.join(formats)} image") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageLoadError(f"{what} cannot be decoded: {exc}") from None
    if array.ndim != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageLoadError(f"{what} decoded to an empty image")
    return np.ascontiguousarray(array)
