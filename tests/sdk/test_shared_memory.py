"""The seed shared-memory API on real shared memory, read from another process."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
from helpers.shm_reader import ReaderProcess
from PIL import Image

from procvision_algorithm_sdk import _seed_writers as seed_writers
from procvision_algorithm_sdk import segment as seg
from procvision_algorithm_sdk import shared_memory as sm
from procvision_algorithm_sdk.errors import IMAGE_LOAD_FAILED, ImageLoadError

SHM = "/dev/shm"
SIZES = {"2mp": (1200, 1920), "20mp": (3648, 5472)}


def _id(name: str) -> str:
    # Ids name machine-wide segments: suffix this run's pid so two suites never share one.
    return f"{name}.{os.getpid()}"


def _exists(name: str) -> bool:
    return os.path.exists(os.path.join(SHM, name))


def _sha(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _frame(height: int, width: int, channels: int | None = 3, seed: int = 0) -> np.ndarray:
    # Smooth content plus noise: encodes quickly, still catches swapped channels or offsets.
    y = np.arange(height, dtype=np.uint32)[:, None]
    x = np.arange(width, dtype=np.uint32)[None, :]
    base = ((x * 7 + y * 3 + seed) % 251).astype(np.uint8)
    if channels is None:
        return base
    planes = [(base + 60 * c).astype(np.uint8) for c in range(channels)]
    return np.stack(planes, axis=2)


@pytest.fixture(scope="module")
def reader() -> Iterator[ReaderProcess]:
    child = ReaderProcess()
    yield child
    child.close()


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    yield
    leftover = sorted(seed_writers._owned)
    for name in leftover:
        sm.dev_clear_shared_memory(name)
    sm.clear_attach_cache()
    assert leftover == [], "a test left segments it created"
    mine = [n for n in os.listdir(SHM) if n.startswith(f"{seg.SEGMENT_PREFIX}{os.getpid()}_")]
    assert mine == []


@pytest.mark.parametrize("size", ["2mp", "20mp"])
@pytest.mark.parametrize("kind", ["RGB", "BGR", "GRAY2D", "GRAY1", "RGBA"])
def test_raw_frame_read_in_another_process(reader: ReaderProcess, kind: str, size: str) -> None:
    height, width = SIZES[size]
    if kind in ("GRAY2D", "GRAY1"):
        frame = _frame(height, width, None)
        if kind == "GRAY1":
            frame = frame[:, :, None]
        expected = np.repeat(frame.reshape(height, width, 1), 3, axis=2)
    else:
        frame = _frame(height, width, 4 if kind == "RGBA" else 3)
        expected = frame[:, :, 2::-1] if kind == "BGR" else frame[:, :, :3]
    meta = sm.write_image_array_to_shared_memory(_id(f"cam-{kind}"), frame)
    assert meta["shm_seq"] > 0 and (meta["width"], meta["height"]) == (width, height)
    if kind == "BGR":
        meta["color_space"] = "BGR"
    answer = reader.ask(op="read", id=_id(f"cam-{kind}"), meta=meta)
    try:
        assert answer["warnings"] == []
        assert answer["shape"] == [height, width, 3] and answer["dtype"] == "uint8"
        assert answer["sha"] == _sha(expected)
        assert answer["writeable"] is False
        assert answer["could_make_writeable"] is False
        assert answer["assignment_failed"] is True
        assert answer["owns_memory"] is False
        if kind.startswith("GRAY"):
            assert answer["strides"][2] == 0  # expanded without a copy
    finally:
        assert sm.dev_clear_shared_memory(_id(f"cam-{kind}"))


@pytest.mark.slow
@pytest.mark.parametrize("size", ["2mp", "20mp"])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_encoded_frame_decoded_in_another_process(
    reader: ReaderProcess, fmt: str, size: str
) -> None:
    height, width = SIZES[size]
    out = io.BytesIO()
    options = {"quality": 90} if fmt == "JPEG" else {"compress_level": 1}
    Image.fromarray(_frame(height, width)).save(out, fmt, **options)
    data = out.getvalue()
    with Image.open(io.BytesIO(data)) as decoded:
        expected = np.asarray(decoded.convert("RGB"))
    meta = sm.dev_write_image_to_shared_memory(_id("encoded"), data)
    assert meta["encoding"] == fmt.lower() and (meta["width"], meta["height"]) == (width, height)
    try:
        answer = reader.ask(op="read", id=_id("encoded"), meta=meta)
        assert answer["warnings"] == []
        assert answer["shape"] == [height, width, 3]
        assert answer["sha"] == _sha(expected)
        assert answer["writeable"] is False
    finally:
        sm.dev_clear_shared_memory(_id("encoded"))


def test_gray_png_is_expanded_to_rgb(reader: ReaderProcess) -> None:
    gray = _frame(48, 64, None)
    out = io.BytesIO()
    Image.fromarray(gray, "L").save(out, "PNG")
    meta = sm.dev_write_image_to_shared_memory(_id("gray-png"), out.getvalue())
    try:
        answer = reader.ask(op="read", id=_id("gray-png"), meta=meta)
        assert answer["sha"] == _sha(np.repeat(gray[:, :, None], 3, axis=2))
    finally:
        sm.dev_clear_shared_memory(_id("gray-png"))


def test_reader_failures_keep_seed_values_and_warn(reader: ReaderProcess) -> None:
    frame = _frame(30, 40)
    meta = sm.write_image_array_to_shared_memory(_id("faults"), frame)
    out = io.BytesIO()
    Image.fromarray(frame).save(out, "PNG")
    try:
        cases = [
            (_id("no-such-id"), meta, "segment_missing", "zero"),
            (_id("faults"), {**meta, "width": 0}, "invalid_size", "none"),
            (_id("faults"), {**meta, "height": -3}, "invalid_size", "none"),
            (_id("faults"), {**meta, "shm_seq": meta["shm_seq"] + 7}, "stale_sequence", "zero"),
            (_id("faults"), {**meta, "width": 41}, "header_mismatch", "zero"),
            (_id("faults"), {**meta, "encoding": "jpeg"}, "header_mismatch", "zero"),
            (_id("faults"), {**meta, "color_space": "YUV"}, "header_mismatch", "zero"),
        ]
        for shm_id, bad_meta, cause, returned in cases:
            answer = reader.ask(op="read", id=shm_id, meta=bad_meta)
            assert answer["ok"], answer
            (warning,) = answer["warnings"]
            assert warning["level"] == "warning" and warning["cause"] == cause
            assert warning["error_code"] == IMAGE_LOAD_FAILED
            if returned == "none":
                assert answer["none"] is True
            else:
                assert answer["shape"] == [bad_meta["height"], bad_meta["width"], 3]
                zero = np.zeros((bad_meta["height"], bad_meta["width"], 3), np.uint8)
                assert answer["sha"] == _sha(zero) and answer["could_make_writeable"] is False
            strict = reader.ask(op="read", id=shm_id, meta=bad_meta, strict=True)
            assert strict["ok"] is False and strict["error"] == "ImageLoadError"
            assert strict["code"] == IMAGE_LOAD_FAILED and strict["warnings"] == []
        # The good meta still reads after all that.
        good = reader.ask(op="read", id=_id("faults"), meta=meta)
        assert good["sha"] == _sha(frame) and good["warnings"] == []
    finally:
        sm.dev_clear_shared_memory(_id("faults"))


def test_undecodable_and_mismatched_encoded_payloads(reader: ReaderProcess) -> None:
    broken = b"\xff\xd8\xff\xe0 not really a jpeg"
    meta = sm.dev_write_image_to_shared_memory(_id("broken"), broken)
    assert meta["encoding"] == "jpeg" and meta["width"] == 0
    out = io.BytesIO()
    Image.fromarray(_frame(20, 30)).save(out, "PNG")
    good = sm.dev_write_image_to_shared_memory(_id("small-png"), out.getvalue())
    try:
        answer = reader.ask(op="read", id=_id("broken"), meta={**meta, "width": 30, "height": 20})
        assert answer["warnings"][0]["cause"] == "decode_failed" and answer["shape"] == [20, 30, 3]
        answer = reader.ask(op="read", id=_id("small-png"), meta={**good, "width": 31})
        assert answer["warnings"][0]["cause"] == "size_mismatch"
        # A payload larger than its meta is refused before it is decoded.
        answer = reader.ask(op="read", id=_id("small-png"), meta={**good, "width": 10})
        assert answer["warnings"][0]["cause"] == "decode_failed"
        assert "more than the limit of 200" in answer["warnings"][0]["message"]
        # Seed: the dev writer could not read a size, so the meta it returns gives None.
        answer = reader.ask(op="read", id=_id("broken"), meta=meta)
        assert answer["none"] is True and answer["warnings"][0]["cause"] == "invalid_size"
    finally:
        sm.dev_clear_shared_memory(_id("broken"))
        sm.dev_clear_shared_memory(_id("small-png"))


def test_strict_mode_from_environment() -> None:
    child = ReaderProcess(env={sm.STRICT_ENV: "1"})
    try:
        answer = child.ask(op="read", id="absent", meta={"width": 4, "height": 4})
        assert answer["ok"] is False and answer["code"] == IMAGE_LOAD_FAILED
        loose = child.ask(op="read", id="absent", meta={"width": 4, "height": 4}, strict=False)
        assert loose["ok"] is True and loose["warnings"][0]["cause"] == "segment_missing"
    finally:
        assert child.close() == 0


def test_strict_argument_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ImageLoadError) as info:
        sm.read_image_from_shared_memory("absent", {"width": 2, "height": 2}, strict=True)
    assert info.value.error_code == IMAGE_LOAD_FAILED and "segment_missing" in str(info.value)
    assert sm.read_image_from_shared_memory("absent", {"width": 0, "height": 2}) is None
    record = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert record["cause"] == "invalid_size" and record["returned"] == "none"


def test_rewrite_with_larger_frame_is_seen_through_cached_mapping(reader: ReaderProcess) -> None:
    small = _frame(10, 10, seed=1)
    meta = sm.write_image_array_to_shared_memory(_id("grow"), small)
    try:
        assert reader.ask(op="read", id=_id("grow"), meta=meta)["sha"] == _sha(small)
        same_size = _frame(10, 10, seed=2)
        meta = sm.write_image_array_to_shared_memory(_id("grow"), same_size)  # in place
        assert reader.ask(op="read", id=_id("grow"), meta=meta)["sha"] == _sha(same_size)
        large = _frame(300, 200, seed=3)
        meta = sm.write_image_array_to_shared_memory(_id("grow"), large)  # new segment, same name
        assert reader.ask(op="read", id=_id("grow"), meta=meta)["sha"] == _sha(large)
    finally:
        sm.dev_clear_shared_memory(_id("grow"))


def test_name_reused_without_retire_is_reattached() -> None:
    """A segment recreated under a cached name (its writer crashed) is read afresh."""
    first = _frame(8, 8, seed=1)
    meta = sm.write_image_array_to_shared_memory(_id("reuse"), first)
    name = seg.segment_name_for_id(_id("reuse"))
    assert (sm.read_image_from_shared_memory(_id("reuse"), meta) == first).all()
    assert name in sm.cached_segment_names()
    owned = seed_writers._owned.pop(name)
    seg.unlink_segment(name)  # like a crashed writer: gone without the retired flag
    seg.close_quietly(owned.shm)
    second = _frame(8, 8, seed=5)
    shm = seg.create_segment(name, seg.HEADER_SIZE + second.nbytes)
    try:
        buf = shm.buf
        assert buf is not None
        buf[seg.HEADER_SIZE : seg.HEADER_SIZE + second.nbytes] = second.tobytes()
        seg.write_header(buf, seq=99, height=8, width=8, channels=3, payload_size=192)
        image = sm.read_image_from_shared_memory(_id("reuse"), {**meta, "shm_seq": 99}, strict=True)
        assert (image == second).all()
        del image
    finally:
        sm.clear_attach_cache()
        seg.retire_and_unlink(shm)


def test_prefetch_attaches_ahead_of_the_read() -> None:
    """prefetch() puts the segment in the attach cache; an unknown id is False, not an error."""
    meta = sm.write_image_array_to_shared_memory(_id("prefetch"), _frame(6, 5, seed=3))
    name = seg.segment_name_for_id(_id("prefetch"))
    try:
        sm.clear_attach_cache()
        assert sm.prefetch(_id("prefetch")) is True
        assert name in sm.cached_segment_names()
        image = sm.read_image_from_shared_memory(_id("prefetch"), meta, strict=True)
        assert (image == _frame(6, 5, seed=3)).all()
        del image
        assert sm.prefetch(_id("prefetch-never-written")) is False
    finally:
        sm.clear_attach_cache()
        sm.dev_clear_shared_memory(_id("prefetch"))


def test_attach_cache_is_bounded() -> None:
    ids = [_id(f"many-{i}") for i in range(sm.ATTACH_CACHE_SIZE * 3)]
    try:
        for i, shm_id in enumerate(ids):
            meta = sm.write_image_array_to_shared_memory(shm_id, _frame(4, 4, seed=i))
            assert (sm.read_image_from_shared_memory(shm_id, meta) == _frame(4, 4, seed=i)).all()
            assert len(sm.cached_segment_names()) <= sm.ATTACH_CACHE_SIZE
    finally:
        for shm_id in ids:
            sm.dev_clear_shared_memory(shm_id)
    # Cleared segments are retired, so the next read drops their mappings.
    sm.read_image_from_shared_memory("many-0", {"width": 1, "height": 1})
    assert sm.cached_segment_names() == []


def test_reader_exit_leaves_writer_segment_and_prints_no_tracker_noise() -> None:
    frame = _frame(16, 16)
    meta = sm.write_image_array_to_shared_memory(_id("tracked"), frame)
    name = seg.segment_name_for_id(_id("tracked"))
    try:
        child = ReaderProcess()
        assert child.ask(op="read", id=_id("tracked"), meta=meta)["sha"] == _sha(frame)
        assert child.ask(op="attach_rw", name=name)["size"] >= seg.HEADER_SIZE + frame.nbytes
        assert child.close() == 0
        assert b"resource_tracker" not in child.stderr and b"leaked" not in child.stderr
        assert _exists(name)
        again = ReaderProcess()
        assert again.ask(op="read", id=_id("tracked"), meta=meta)["sha"] == _sha(frame)
        again.kill()
        assert _exists(name)
    finally:
        assert sm.dev_clear_shared_memory(_id("tracked"))
    assert not _exists(name)


def test_segments_created_by_seed_functions_are_unlinked_at_exit() -> None:
    script = (
        "import json, os, sys, numpy as np\n"
        "from procvision_algorithm_sdk import shared_memory as sm, segment as seg\n"
        "a, b, c = sys.argv[1:]\n"
        "sm.write_image_array_to_shared_memory(a, np.ones((4, 4, 3), np.uint8))\n"
        "sm.dev_write_image_to_shared_memory(b, b'\\x89PNG\\r\\n\\x1a\\n')\n"
        "sm.write_image_array_to_shared_memory(c, np.ones((4, 4), np.uint8))\n"
        "sm.dev_clear_shared_memory(c)\n"
        "names = [seg.segment_name_for_id(i) for i in (a, b)]\n"
        "print(json.dumps([os.path.exists('/dev/shm/' + n) for n in names]))\n"
    )
    ids = [_id("exit-a"), _id("exit-b"), _id("exit-c")]
    done = subprocess.run(
        [sys.executable, "-c", script, *ids],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(done.stdout) == [True, True]
    for shm_id in ids:
        assert not _exists(seg.segment_name_for_id(shm_id))
    assert done.stderr == ""


def test_clear_of_unknown_id_and_foreign_segment() -> None:
    assert sm.dev_clear_shared_memory("never-written") is False
    script = (
        "import sys, numpy as np\n"
        "from procvision_algorithm_sdk import shared_memory as sm\n"
        "sm.write_image_array_to_shared_memory(sys.argv[1], np.ones((4, 4, 3), np.uint8))\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, _id("foreign")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        name = seg.segment_name_for_id(_id("foreign"))
        assert _exists(name)
        assert sm.dev_clear_shared_memory(_id("foreign")) is True
        assert not _exists(name)
    finally:
        child.communicate("\n", timeout=30)
    assert child.returncode == 0


def test_seed_writers_never_remove_a_live_runners_slot() -> None:
    script = (
        "import sys, numpy as np\n"
        "from procvision_runner.slots import SlotRing\n"
        "ring = SlotRing('owner', count=1)\n"
        "slot = ring.acquire(48, timeout=5)\n"
        "meta = slot.write_frame(np.full((4, 4, 3), 7, np.uint8))\n"
        "print(slot.name, flush=True)\n"
        "sys.stdin.readline()\n"
        "ring.close()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        name = child.stdout.readline().strip()
        assert _exists(name)
        assert sm.dev_clear_shared_memory(name) is False
        with pytest.raises(FileExistsError, match="belongs to live process"):
            sm.write_image_array_to_shared_memory(name, np.zeros((4, 4, 3), np.uint8))
        assert _exists(name)
        meta = {"width": 4, "height": 4, "color_space": "RGB"}
        assert int(sm.read_image_from_shared_memory(name, meta, strict=True)[0, 0, 0]) == 7
    finally:
        child.communicate("\n", timeout=30)
        sm.clear_attach_cache()
    assert child.returncode == 0
    assert not _exists(name)


def test_segment_names_are_safe_and_stable() -> None:
    owned = seg.new_segment_name()
    assert seg.segment_name_for_id(owned) == owned
    assert seg.owner_pid_from_name(owned) == os.getpid()
    for shm_id in ["cam-1", "../../etc/passwd", "x" * 500, "dev-shm:ünï/côdé", ""]:
        name = seg.segment_name_for_id(shm_id)
        assert name == seg.segment_name_for_id(shm_id)
        assert name.startswith(seg.SEGMENT_PREFIX) and len(name) <= 30
        assert name.replace("_", "").isalnum() and "/" not in name
        assert seg.owner_pid_from_name(name) is None
    assert seg.segment_name_for_id("cam-1") != seg.segment_name_for_id("cam-2")
    assert len("/" + seg.new_segment_name(pid=4194304)) <= 31  # macOS PSHMNAMLEN


def test_header_round_trip() -> None:
    buf = bytearray(seg.HEADER_SIZE)
    seg.write_header(
        buf, seq=2**40, dtype=np.uint16, height=7, width=9, channels=3, payload_size=378
    )
    header = seg.read_header(buf)
    assert header.valid and not header.retired and header.seq == 2**40
    assert (header.height, header.width, header.channels) == (7, 9, 3)
    assert header.dtype == np.dtype(np.uint16) and header.encoding_name == "raw"
    assert header.owner_pid == os.getpid() and header.payload_size == 378
    seg.mark_retired(buf)
    assert seg.read_header(buf).retired and seg.read_header(buf).seq == 0
    with pytest.raises(ValueError):
        seg.read_header(bytes(10))
    with pytest.raises(ValueError):
        seg.dtype_code(np.complex64)


def test_uint16_frames_keep_their_dtype() -> None:
    frame = (_frame(6, 5).astype(np.uint16) * 200).astype(np.uint16)
    meta = sm.write_image_array_to_shared_memory(_id("deep"), frame)
    try:
        image = sm.read_image_from_shared_memory(_id("deep"), meta, strict=True)
        assert image.dtype == np.uint16 and (image == frame).all()
        del image
    finally:
        sm.dev_clear_shared_memory(_id("deep"))
