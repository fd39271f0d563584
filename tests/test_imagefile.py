"""decode_image: the one place image files become RGB frames (CLI, runner CLI, HTTP, shm)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from procvision_algorithm_sdk.errors import ImageLoadError
from procvision_algorithm_sdk.imagefile import decode_image


def _encode(array: np.ndarray, fmt: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format=fmt)
    return out.getvalue()


RGB = np.arange(48 * 64 * 3, dtype=np.uint32).reshape(48, 64, 3).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["PNG", "BMP"])
def test_lossless_formats_round_trip_from_bytes_and_files(fmt: str, tmp_path: Path) -> None:
    data = _encode(RGB, fmt)
    path = tmp_path / f"frame.{fmt.lower()}"
    path.write_bytes(data)
    for source in (data, path, str(path)):
        frame = decode_image(source)
        assert frame.dtype == np.uint8 and frame.flags.c_contiguous
        np.testing.assert_array_equal(frame, RGB)


def test_jpeg_decodes_to_rgb_of_the_right_size() -> None:
    frame = decode_image(_encode(RGB, "JPEG"))
    assert frame.shape == RGB.shape
    assert np.abs(frame.astype(int) - RGB.astype(int)).mean() < 12


def test_gray_and_rgba_become_three_channels() -> None:
    gray = RGB[:, :, 0]
    frame = decode_image(_encode(gray, "PNG"))
    assert frame.shape == (48, 64, 3)
    np.testing.assert_array_equal(frame[:, :, 2], gray)
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 255, np.uint8)])
    np.testing.assert_array_equal(decode_image(_encode(rgba, "PNG")), RGB)


@pytest.mark.parametrize(
    ("source", "words"),
    [
        (b"", "empty"),
        (b"definitely not an image", "is not a PNG/JPEG/BMP image"),
        (_encode(RGB, "PNG")[:60], "cannot be decoded"),
    ],
)
def test_bad_bytes_raise_1002(source: bytes, words: str) -> None:
    with pytest.raises(ImageLoadError, match=words) as caught:
        decode_image(source)
    assert caught.value.error_code == "1002"


def test_missing_file_formats_and_pixel_limit(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="image not found"):
        decode_image(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="is not a PNG/JPEG image"):
        decode_image(_encode(RGB, "BMP"), formats=("PNG", "JPEG"))
    with pytest.raises(ImageLoadError, match="more than the limit of 1000"):
        decode_image(_encode(RGB, "PNG"), max_pixels=1000)
