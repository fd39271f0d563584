"""Legacy frame files (original SDK 0.0.6+ and its hosts): read by read_image_from_shared_memory."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest
from helpers.original_sdk import run_with_original_sdk
from PIL import Image

from procvision_algorithm_sdk import legacy_frames as lf
from procvision_algorithm_sdk import shared_memory as sm
from procvision_algorithm_sdk.errors import IMAGE_LOAD_FAILED, ImageLoadError


@pytest.fixture
def shm_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "frames"
    directory.mkdir()
    monkeypatch.setenv("PROC_SHM_DIR", str(directory))
    return directory


def _frame(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)


def _uid(text: str) -> str:
    return f"{text}:{uuid.uuid4().hex}"


def test_safe_id_and_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert lf.safe_id("dev-shm:session 1/ä") == "dev-shm_session_1__"
    monkeypatch.delenv("PROC_SHM_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert lf.legacy_dir() == tmp_path / "procvision_dev_shm"
    assert lf.legacy_path(tmp_path, "../../etc/passwd", ".npy") == tmp_path / ".._.._etc_passwd.npy"
    with pytest.raises(ValueError):
        lf.legacy_path(tmp_path, "..", ".npy")


def test_npy_is_memory_mapped_exact_and_read_only(shm_dir: Path) -> None:
    frame = _frame(48, 64)
    sid = _uid("dev-shm:cam")
    np.save(shm_dir / (lf.safe_id(sid) + ".npy"), frame)
    image = sm.read_image_from_shared_memory(sid, {"width": 64, "height": 48})
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8
    assert np.array_equal(image, frame)
    assert not image.flags.writeable and not image.flags.owndata
    base = image
    while isinstance(getattr(base, "base", None), np.ndarray):
        base = base.base
    owner = base.base.obj if isinstance(base.base, memoryview) else base.base
    assert type(owner).__name__ == "mmap"  # a mapping of the file, not a copy


def test_default_directory_under_tempdir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PROC_SHM_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (tmp_path / "procvision_dev_shm").mkdir()
    frame = _frame(10, 12, seed=3)
    sid = _uid("frame")
    np.save(tmp_path / "procvision_dev_shm" / (lf.safe_id(sid) + ".npy"), frame)
    assert np.array_equal(sm.read_image_from_shared_memory(sid, {"width": 12, "height": 10}), frame)


def test_npy_color_rules_match_segments(shm_dir: Path) -> None:
    rgb = _frame(20, 30, seed=1)
    gray = rgb[:, :, 0]
    rgba = np.concatenate([rgb, np.full((20, 30, 1), 255, np.uint8)], axis=2)
    meta = {"width": 30, "height": 20}
    for name, array, color_space, want in (
        ("bgr", rgb[:, :, ::-1], "BGR", rgb),
        ("gray", gray, "GRAY", np.repeat(gray[:, :, None], 3, axis=2)),
        ("gray1", gray[:, :, None], "RGB", np.repeat(gray[:, :, None], 3, axis=2)),
        ("rgba", rgba, "RGB", rgb),
        ("fortran", np.asfortranarray(rgb), "RGB", rgb),
    ):
        sid = _uid(name)
        np.save(shm_dir / (lf.safe_id(sid) + ".npy"), array)
        image = sm.read_image_from_shared_memory(sid, {**meta, "color_space": color_space})
        assert image.shape == (20, 30, 3), name
        assert np.array_equal(image, want), name


def test_bin_png_and_jpeg_are_decoded(shm_dir: Path) -> None:
    frame = _frame(24, 32, seed=2)
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    sid = _uid("dev-shm:png")
    (shm_dir / (lf.safe_id(sid) + ".bin")).write_bytes(buf.getvalue())
    image = sm.read_image_from_shared_memory(sid, {"width": 32, "height": 24})
    assert np.array_equal(image, frame) and not image.flags.writeable
    flat = np.full((24, 32, 3), 128, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(flat).save(buf, format="JPEG", quality=95)
    sid = _uid("jpeg")
    (shm_dir / (lf.safe_id(sid) + ".bin")).write_bytes(buf.getvalue())
    image = sm.read_image_from_shared_memory(sid, {"width": 32, "height": 24})
    assert image.shape == (24, 32, 3) and abs(int(image.mean()) - 128) <= 2


@pytest.mark.parametrize(
    ("kind", "cause"),
    [
        ("npy_size", "header_mismatch"),
        ("npy_object", "header_invalid"),
        ("npy_shape", "header_invalid"),
        ("npy_truncated", "payload_truncated"),
        ("bin_size", "size_mismatch"),
        ("bin_garbage", "decode_failed"),
        ("bin_huge", "size_mismatch"),
    ],
)
def test_bad_files_fail_like_segments(
    shm_dir: Path, kind: str, cause: str, capfd: pytest.CaptureFixture[str]
) -> None:
    sid = _uid(kind)
    stem = shm_dir / lf.safe_id(sid)
    if kind == "npy_size":
        np.save(str(stem) + ".npy", _frame(10, 10))
    elif kind == "npy_object":
        np.save(str(stem) + ".npy", np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    elif kind == "npy_shape":
        np.save(str(stem) + ".npy", np.zeros((16, 16, 3, 2), np.uint8))
    elif kind == "npy_truncated":
        np.save(str(stem) + ".npy", _frame(16, 16))
        data = Path(str(stem) + ".npy").read_bytes()
        Path(str(stem) + ".npy").write_bytes(data[:-10])
    elif kind == "bin_size":
        buf = io.BytesIO()
        Image.fromarray(_frame(10, 10)).save(buf, format="PNG")
        Path(str(stem) + ".bin").write_bytes(buf.getvalue())
    elif kind == "bin_garbage":
        Path(str(stem) + ".bin").write_bytes(b"not an image at all")
    else:
        Path(str(stem) + ".bin").write_bytes(b"\0" * (16 * 16 * 8 + (1 << 20) + 1))
    meta = {"width": 16, "height": 16}
    with pytest.raises(ImageLoadError) as err:
        sm.read_image_from_shared_memory(sid, meta, strict=True)
    assert err.value.error_code == IMAGE_LOAD_FAILED and cause in str(err.value)
    capfd.readouterr()
    image = sm.read_image_from_shared_memory(sid, meta)
    assert image.shape == (16, 16, 3) and not image.any()
    warning = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line]
    assert warning[-1]["cause"] == cause and warning[-1]["returned"] == "zero_image"


def test_symlink_is_not_followed(shm_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.npy"
    np.save(target, _frame(8, 8))
    sid = _uid("link")
    os.symlink(target, shm_dir / (lf.safe_id(sid) + ".npy"))
    with pytest.raises(ImageLoadError):
        sm.read_image_from_shared_memory(sid, {"width": 8, "height": 8}, strict=True)


def test_a_segment_of_ours_wins_over_a_file(shm_dir: Path) -> None:
    sid = _uid("both")
    ours = _frame(8, 8, seed=5)
    np.save(shm_dir / (lf.safe_id(sid) + ".npy"), _frame(8, 8, seed=6))
    try:
        meta = sm.write_image_array_to_shared_memory(sid, ours)
        assert np.array_equal(sm.read_image_from_shared_memory(sid, meta), ours)
    finally:
        assert sm.dev_clear_shared_memory(sid)


def test_no_file_no_segment_is_still_missing(shm_dir: Path) -> None:
    with pytest.raises(ImageLoadError, match="segment_missing"):
        sm.read_image_from_shared_memory(_uid("none"), {"width": 4, "height": 4}, strict=True)


def test_one_debug_line_per_process(shm_dir: Path) -> None:
    sids = [_uid("a"), _uid("b")]
    for sid in sids:
        np.save(shm_dir / (lf.safe_id(sid) + ".npy"), _frame(4, 4))
    code = (
        "import sys\n"
        "from procvision_algorithm_sdk import read_image_from_shared_memory as r\n"
        "for i in range(3):\n"
        "    for sid in sys.argv[1:]:\n"
        "        assert r(sid, {'width': 4, 'height': 4}).shape == (4, 4, 3)\n"
    )
    env = dict(os.environ, PROC_LOG_LEVEL="debug")
    proc = subprocess.run(
        [sys.executable, "-c", code, *sids], capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    legacy = [line for line in lines if "legacy frame files" in line["message"]]
    assert len(legacy) == 1 and legacy[0]["level"] == "debug"
    assert not [line for line in lines if line["level"] in ("warning", "error")]


@pytest.mark.slow
def test_frames_written_by_the_original_sdk(shm_dir: Path, tmp_path: Path) -> None:
    """The real 0.0.7 writers (as its dev tools and hosts use them) are read exactly."""
    frame = _frame(30, 40, seed=9)
    np.save(tmp_path / "input.npy", frame)
    png = io.BytesIO()
    Image.fromarray(frame).save(png, format="PNG")
    (tmp_path / "input.png").write_bytes(png.getvalue())
    array_id, bytes_id = _uid("dev-shm:arr"), _uid("dev-shm:session-1")
    code = (
        "import numpy as np\n"
        "from procvision_algorithm_sdk.shared_memory import (\n"
        "    write_image_array_to_shared_memory as wa, dev_write_image_to_shared_memory as wb)\n"
        f"wa({array_id!r}, np.load({str(tmp_path / 'input.npy')!r}))\n"
        f"wb({bytes_id!r}, open({str(tmp_path / 'input.png')!r}, 'rb').read())\n"
    )
    proc = run_with_original_sdk("0.0.7", tmp_path / "original", code)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.suffix for p in shm_dir.iterdir()) == [".bin", ".npy"]
    meta = {"width": 40, "height": 30, "color_space": "RGB"}
    assert np.array_equal(sm.read_image_from_shared_memory(array_id, meta, strict=True), frame)
    assert np.array_equal(sm.read_image_from_shared_memory(bytes_id, meta, strict=True), frame)
