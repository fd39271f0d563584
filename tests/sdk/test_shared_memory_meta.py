"""read_image_from_shared_memory against untrusted geometry, and the lifetime of its arrays."""

from __future__ import annotations

import json
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from procvision_algorithm_sdk import shared_memory as sm
from procvision_algorithm_sdk.errors import IMAGE_LOAD_FAILED, ImageLoadError

ABSURD = 10**12


def _id(name: str) -> str:
    # Ids name machine-wide segments: suffix this run's pid so two suites never share one.
    return f"meta-{name}.{os.getpid()}"


@pytest.fixture
def frame_id() -> Iterator[str]:
    shm_id = _id("frame")
    yield shm_id
    sm.dev_clear_shared_memory(shm_id)
    sm.clear_attach_cache()


def _last_record(capsys: pytest.CaptureFixture[str]) -> dict:
    return json.loads(capsys.readouterr().err.strip().splitlines()[-1])


@pytest.mark.parametrize("present", [True, False], ids=["segment", "no-segment"])
def test_absurd_geometry_is_1002_strict_and_none_with_a_warning_otherwise(
    frame_id: str, present: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    shm_id = frame_id if present else _id("absent")
    if present:
        sm.write_image_array_to_shared_memory(frame_id, np.ones((4, 6, 3), np.uint8))
    meta = {"width": ABSURD, "height": ABSURD}
    with pytest.raises(ImageLoadError) as caught:
        sm.read_image_from_shared_memory(shm_id, meta, strict=True)
    assert caught.value.error_code == IMAGE_LOAD_FAILED and "invalid_size" in str(caught.value)
    capsys.readouterr()
    assert sm.read_image_from_shared_memory(shm_id, meta) is None
    record = _last_record(capsys)
    assert record["level"] == "warning" and record["error_code"] == IMAGE_LOAD_FAILED
    assert record["cause"] == "invalid_size" and record["returned"] == "none"
    # One side absurd is enough, whatever the other says.
    assert sm.read_image_from_shared_memory(shm_id, {"width": 6, "height": 2**40}) is None


def test_no_allocation_is_sized_by_the_meta(frame_id: str) -> None:
    sm.write_image_array_to_shared_memory(frame_id, np.ones((4, 6, 3), np.uint8))
    # The largest meta still accepted: a mismatch gives the seed's zero image, which must be a
    # view of one pixel, not 3 x 65536 x 65536 bytes.
    meta = {"width": 65_536, "height": 65_536}
    tracemalloc.start()
    try:
        image = sm.read_image_from_shared_memory(frame_id, meta)
        missing = sm.read_image_from_shared_memory(_id("absent"), meta)
        wide = {"width": ABSURD, "height": 7}
        for shm_id in (frame_id, _id("absent")):
            with pytest.raises(ImageLoadError):
                sm.read_image_from_shared_memory(shm_id, wide, strict=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert image.shape == missing.shape == (65_536, 65_536, 3)
    # one zero pixel seen everywhere (row and column strides 0), never writable
    assert image.strides[:2] == (0, 0) and image[-1, -1].tolist() == [0, 0, 0]
    assert not image.flags.writeable
    assert peak < 1024 * 1024, f"reading with an untrusted meta allocated {peak} bytes"


KEEP_RULE = "valid only during"


def test_a_kept_array_shows_the_next_frame_and_a_copy_does_not(frame_id: str) -> None:
    first = np.full((8, 12, 3), 11, np.uint8)
    meta = sm.write_image_array_to_shared_memory(frame_id, first)
    kept = sm.read_image_from_shared_memory(frame_id, meta, strict=True)
    copied = kept.copy()
    # The writer reuses the segment for the next frame of the same size, as Runner slots do.
    second = np.full((8, 12, 3), 222, np.uint8)
    sm.write_image_array_to_shared_memory(frame_id, second)
    np.testing.assert_array_equal(kept, second)
    np.testing.assert_array_equal(copied, first)
    del kept


def test_the_rule_is_written_where_algorithm_authors_look(tmp_path: Path) -> None:
    from procvision_devtools.init import scaffold

    doc = " ".join((sm.read_image_from_shared_memory.__doc__ or "").split())
    assert KEEP_RULE in doc and "Copy what you keep" in doc
    made = scaffold("keeper", directory=tmp_path / "keeper")
    main = (tmp_path / "keeper" / made["module"] / "main.py").read_text()
    assert KEEP_RULE in main and ".copy()" in main
    readme = Path(__file__).resolve().parents[2] / "README.md"
    algorithm_section = readme.read_text().split("## Writing an algorithm", 1)[1].split("\n## ")[0]
    assert KEEP_RULE in algorithm_section and "copy what you keep" in algorithm_section


def test_a_16bit_tiff_from_the_dev_writer_is_scaled_not_clipped(frame_id: str) -> None:
    import io

    from PIL import Image

    gradient = np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16
    out = io.BytesIO()
    Image.fromarray(gradient.astype(np.uint16)).save(out, format="TIFF")
    meta = sm.dev_write_image_to_shared_memory(frame_id, out.getvalue())
    assert meta["encoding"] == "other"
    image = sm.read_image_from_shared_memory(frame_id, meta, strict=True)
    np.testing.assert_array_equal(image[:, :, 0], (gradient >> 8).astype(np.uint8))
    del image
