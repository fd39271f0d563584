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
        (b"definitely not an image", "is not a PNG/JPEG/BMP/TIFF image"),
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


# ---- deeper than 8 bits, TIFF, and what is refused -------------------------------------------

GRADIENT16 = np.arange(256 * 256, dtype=np.uint32).reshape(256, 256).astype(np.uint16)


def _tiff(samples: np.ndarray, bits: int = 16, photometric: int | None = None) -> bytes:
    """A baseline little-endian, uncompressed, one-strip TIFF (Pillow cannot write 48-bit RGB)."""
    height, width = samples.shape[:2]
    spp = 1 if samples.ndim == 2 else samples.shape[2]
    if bits == 12:  # packed, MSB first: two samples in three bytes
        flat = samples.astype(np.uint16).reshape(-1, 2)
        a, b = flat[:, 0], flat[:, 1]
        data = np.stack([a >> 4, ((a & 0xF) << 4) | (b >> 8), b & 0xFF], axis=1)
        pixels = data.astype(np.uint8).tobytes()
    else:
        pixels = samples.astype("<u2" if bits == 16 else np.uint8).tobytes()
    bits_offset = 8
    strip_offset = bits_offset + 2 * spp
    ifd_offset = strip_offset + len(pixels)
    photo = photometric if photometric is not None else (1 if spp == 1 else 2)
    bits_value = (bits_offset, spp, 3) if spp > 1 else (bits, 1, 3)
    tags = [  # (tag, value, count, type: 3 short, 4 long)
        (256, width, 1, 4),
        (257, height, 1, 4),
        (258, bits_value[0], bits_value[1], 3),
        (259, 1, 1, 3),
        (262, photo, 1, 3),
        (273, strip_offset, 1, 4),
        (277, spp, 1, 3),
        (278, height, 1, 4),
        (279, len(pixels), 1, 4),
    ]
    out = bytearray(b"II*\x00" + ifd_offset.to_bytes(4, "little"))
    out += b"".join(bits.to_bytes(2, "little") for _ in range(spp))
    out += pixels
    out += len(tags).to_bytes(2, "little")
    for tag, value, count, kind in tags:
        field = value.to_bytes(2, "little") + b"\0\0" if kind == 3 else value.to_bytes(4, "little")
        out += tag.to_bytes(2, "little") + kind.to_bytes(2, "little")
        out += count.to_bytes(4, "little") + field
    return bytes(out + b"\0\0\0\0")


def _expected_mono(values: np.ndarray, shift: int) -> np.ndarray:
    mono = (values.astype(np.uint32) >> shift).astype(np.uint8)
    return np.repeat(mono[:, :, None], 3, axis=2)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_grey_is_scaled_by_its_bit_depth_not_clipped(fmt: str, tmp_path: Path) -> None:
    path = tmp_path / f"gradient.{fmt.lower()}"
    Image.fromarray(GRADIENT16).save(path, format=fmt)
    assert Image.open(path).mode.startswith("I;16")
    frame = decode_image(path)
    np.testing.assert_array_equal(frame, _expected_mono(GRADIENT16, 8))
    assert abs(float(frame.mean()) - 127.5) < 0.01
    assert float((frame == 255).mean()) < 0.01  # was 99.6 % clipped to 255


def test_16bit_rgb_and_8bit_tiff_are_accepted() -> None:
    rgb16 = np.stack([GRADIENT16, GRADIENT16[::-1], GRADIENT16.T], axis=2)
    np.testing.assert_array_equal(decode_image(_tiff(rgb16)), (rgb16 >> 8).astype(np.uint8))
    np.testing.assert_array_equal(decode_image(_encode(RGB, "TIFF")), RGB)
    grey = RGB[:, :, 1]
    np.testing.assert_array_equal(decode_image(_encode(grey, "TIFF")), _expected_mono(grey, 0))


def test_12bit_tiff_is_scaled_by_its_declared_12_bits() -> None:
    values = (GRADIENT16 >> 4)[:, :64]  # 0..4095, an even row length for the 2-in-3 packing
    frame = decode_image(_tiff(values, bits=12))
    np.testing.assert_array_equal(frame, _expected_mono(values, 4))
    assert frame.max() == 255


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_wide_modes_in_the_16bit_range_are_scaled(dtype: type) -> None:
    data = _encode(GRADIENT16.astype(dtype), "TIFF")
    assert Image.open(io.BytesIO(data)).mode in ("F", "I")
    np.testing.assert_array_equal(decode_image(data), _expected_mono(GRADIENT16, 8))


def _cmyk_jpeg() -> bytes:
    out = io.BytesIO()
    Image.fromarray(RGB).convert("CMYK").save(out, format="JPEG")
    return out.getvalue()


def _multipage_tiff() -> bytes:
    out = io.BytesIO()
    pages = [Image.fromarray(RGB), Image.fromarray(RGB[::-1])]
    pages[0].save(out, format="TIFF", save_all=True, append_images=pages[1:])
    return out.getvalue()


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: _encode((GRADIENT16.astype(np.float32) - 1.0), "TIFF"), "0..65535"),
        (lambda: _encode(np.full((4, 4), np.nan, np.float32), "TIFF"), "not finite"),
        (lambda: _encode(np.full((4, 4), 70_000, np.int32), "TIFF"), "0..65535"),
        (_cmyk_jpeg, "mode CMYK"),
        (lambda: _encode(np.dstack([RGB, RGB[:, :, :1]]), "TIFF"), "TIFF of mode RGBA"),
        (lambda: _tiff(RGB[:, :, :1].repeat(4, axis=2), bits=8, photometric=5), "TIFF of mode"),
        (_multipage_tiff, "holds 2 frames"),
    ],
    ids=["negative-F", "nan-F", "I-past-16-bit", "cmyk-jpeg", "rgba-tiff", "cmyk-tiff", "pages"],
)
def test_what_cannot_be_kept_faithfully_is_refused_with_1002(make, words: str) -> None:
    with pytest.raises(ImageLoadError, match=words) as caught:
        decode_image(make())
    assert caught.value.error_code == "1002"
