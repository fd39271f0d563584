"""SlotRing, the Runner's writer side of shared memory, against reader processes."""

from __future__ import annotations

import gc
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from helpers.shm_reader import ReaderProcess
from PIL import Image

from procvision_algorithm_sdk import segment as seg
from procvision_runner.slots import SlotRing, startup_sweep

SHM = "/dev/shm"


def _exists(name: str) -> bool:
    return os.path.exists(os.path.join(SHM, name))


def _sha(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _counts() -> tuple[int, int]:
    with open("/proc/self/maps") as maps:
        return len(os.listdir("/proc/self/fd")), sum(1 for _ in maps)


@pytest.fixture(scope="module")
def reader() -> Iterator[ReaderProcess]:
    child = ReaderProcess()
    yield child
    child.close()


@pytest.fixture(autouse=True)
def nothing_left_in_dev_shm() -> Iterator[None]:
    yield
    gc.collect()
    mine = [n for n in os.listdir(SHM) if n.startswith(f"{seg.SEGMENT_PREFIX}{os.getpid()}_")]
    assert mine == []


def test_frames_reuse_preallocated_segments(reader: ReaderProcess) -> None:
    frame = _frame(1200, 1920)
    with SlotRing("w0", count=2, initial_bytes=frame.nbytes) as ring:
        names = sorted(ring.names)
        allocated = ring.bytes_allocated
        assert len(names) == 2 and all(_exists(n) for n in names)
        assert allocated >= 2 * (frame.nbytes + seg.HEADER_SIZE)
        assert ring.bytes_in_use == 0
        seen = set()
        for i in range(6):
            current = _frame(1200, 1920, seed=i)
            slot = ring.acquire(current.nbytes, timeout=1.0)
            assert ring.bytes_in_use > 0 and ring.free_slots == 1
            meta = slot.write_frame(current, camera_id="cam-7", timestamp_ms=1234 + i)
            assert meta["camera_id"] == "cam-7" and meta["timestamp_ms"] == 1234 + i
            assert (meta["width"], meta["height"], meta["color_space"]) == (1920, 1200, "RGB")
            answer = reader.ask(op="read", id=slot.name, meta=meta)
            assert answer["sha"] == _sha(current) and answer["warnings"] == []
            assert answer["writeable"] is False and answer["owns_memory"] is False
            seen.add(slot.name)
            slot.release()
        assert sorted(ring.names) == names and seen <= set(names)
        assert ring.bytes_allocated == allocated and ring.bytes_in_use == 0
    assert not any(_exists(n) for n in names)


def test_bgr_and_gray_frames_through_a_slot(reader: ReaderProcess) -> None:
    with SlotRing("w1", count=1) as ring:
        bgr = _frame(120, 160, seed=3)
        slot = ring.acquire(bgr.nbytes, timeout=1.0)
        meta = slot.write_frame(bgr, color_space="BGR")
        assert reader.ask(op="read", id=slot.name, meta=meta)["sha"] == _sha(bgr[:, :, ::-1])
        gray = bgr[:, :, 0].copy()
        meta = slot.write_frame(gray)
        assert meta["color_space"] == "GRAY"
        answer = reader.ask(op="read", id=slot.name, meta=meta)
        assert answer["sha"] == _sha(np.repeat(gray[:, :, None], 3, axis=2))
        with pytest.raises(ValueError):
            slot.write_frame(bgr, color_space="GRAY")
        with pytest.raises(ValueError):
            slot.write_frame(np.zeros((4, 4, 2), np.uint8))
        slot.release()


def test_acquire_waits_with_a_deadline_and_wakes_on_release() -> None:
    with SlotRing("w2", count=1, initial_bytes=1024) as ring:
        held = ring.acquire(10, timeout=1.0)
        with pytest.raises(TimeoutError):
            ring.acquire(10, timeout=0.05)
        got: list[str] = []

        def waiter() -> None:
            slot = ring.acquire(10, timeout=30.0)
            got.append(slot.name)
            slot.release()

        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.05)
        assert got == []
        held.release()
        thread.join(timeout=30)
        assert not thread.is_alive() and got == [held.name]


def test_larger_frame_grows_the_slot_and_unlinks_the_old_segment(reader: ReaderProcess) -> None:
    with SlotRing("w3", count=1, initial_bytes=1000) as ring:
        (first_name,) = ring.names
        small = _frame(10, 10, seed=1)
        slot = ring.acquire(small.nbytes, timeout=1.0)
        old_meta = slot.write_frame(small)
        assert reader.ask(op="read", id=first_name, meta=old_meta)["sha"] == _sha(small)
        slot.release()
        large = _frame(400, 300, seed=2)
        slot = ring.acquire(large.nbytes, timeout=1.0)
        assert slot.name != first_name and not _exists(first_name)
        meta = slot.write_frame(large)
        assert reader.ask(op="read", id=slot.name, meta=meta)["sha"] == _sha(large)
        stale = reader.ask(op="read", id=first_name, meta=old_meta)
        assert stale["warnings"][0]["cause"] == "segment_missing"
        # A holder may also write a larger frame than it asked for: the slot grows in place.
        larger = _frame(500, 400, seed=3)
        meta = slot.write_frame(larger)
        assert reader.ask(op="read", id=slot.name, meta=meta)["sha"] == _sha(larger)
        assert len(ring.names) == 1
        slot.release()
        assert first_name not in reader.ask(op="stats")["cached"]


def test_fill_in_place_and_encoded_payloads(reader: ReaderProcess) -> None:
    with SlotRing("w4", count=2) as ring:
        slot = ring.acquire(64 * 48 * 3, timeout=1.0)
        view = slot.payload_view((48, 64, 3))
        assert view.flags.writeable
        view[:] = _frame(48, 64, seed=9)
        expected = view.copy()
        del view
        meta = slot.commit(color_space="RGB", camera_id="c")
        assert reader.ask(op="read", id=slot.name, meta=meta)["sha"] == _sha(expected)
        with pytest.raises(RuntimeError):
            slot.commit()
        slot.release()

        out = io.BytesIO()
        picture = _frame(90, 120, seed=4)
        Image.fromarray(picture).save(out, "JPEG", quality=95)
        with Image.open(io.BytesIO(out.getvalue())) as decoded:
            expected = np.asarray(decoded.convert("RGB"))
        slot = ring.acquire(len(out.getvalue()), timeout=1.0)
        meta = slot.write_encoded(out.getvalue(), "jpeg", width=120, height=90)
        assert meta["encoding"] == "jpeg"
        answer = reader.ask(op="read", id=slot.name, meta=meta)
        assert answer["sha"] == _sha(expected) and answer["warnings"] == []
        with pytest.raises(ValueError):
            slot.write_encoded(b"x", "raw", 1, 1)
        slot.release()


def test_reclaim_all_frees_slots_and_stale_handles_are_harmless(reader: ReaderProcess) -> None:
    with SlotRing("w5", count=2, initial_bytes=4096) as ring:
        first = ring.acquire(10, timeout=1.0)
        second = ring.acquire(10, timeout=1.0)
        meta = first.write_frame(_frame(4, 4))
        assert ring.free_slots == 0
        assert ring.reclaim_all() == 2
        assert ring.free_slots == 2 and not first.leased
        # The dead worker's frame is no longer served: the slot's header was invalidated.
        answer = reader.ask(op="read", id=first.name, meta=meta)
        assert answer["warnings"][0]["cause"] == "stale_sequence"
        third = ring.acquire(10, timeout=1.0)
        first.release()  # stale handle: must not free the new holder's slot
        second.release()
        assert third.leased and ring.free_slots == 1
        with pytest.raises(RuntimeError):
            first.write_frame(_frame(4, 4))
        third.release()


def test_close_unlinks_everything_and_gc_does_too() -> None:
    ring = SlotRing("w6", count=3, initial_bytes=100)
    names = ring.names
    slot = ring.acquire(50, timeout=1.0)
    view = slot.payload_view((5, 10))  # a view still held at close must not block the unlink
    ring.close()
    assert not any(_exists(n) for n in names)
    view[0, 0] = 1  # the mapping stays valid for the holder until the view is freed
    del view
    with pytest.raises(RuntimeError):
        ring.acquire(10, timeout=0.1)
    ring.close()  # idempotent

    dropped = SlotRing("w7", count=2, initial_bytes=100)
    names = dropped.names
    del dropped
    gc.collect()
    assert not any(_exists(n) for n in names)


def test_concurrent_holders_never_share_a_slot() -> None:
    with SlotRing("w8", count=2, initial_bytes=4096) as ring:
        lock = threading.Lock()
        holding: set[str] = set()
        errors: list[str] = []

        def work(seed: int) -> None:
            for i in range(100):
                slot = ring.acquire(300, timeout=30.0)
                with lock:
                    if slot.name in holding:
                        errors.append(slot.name)
                    holding.add(slot.name)
                meta = slot.write_frame(_frame(10, 10, seed=seed * 1000 + i))
                if i % 10 == 0:
                    meta = slot.write_frame(_frame(20 + i, 20, seed=i))  # grow under contention
                assert meta["shm_seq"] > 0
                with lock:
                    holding.discard(slot.name)
                slot.release()

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        assert errors == [] and ring.free_slots == 2 and len(ring.names) == 2


def test_worker_cannot_corrupt_the_runners_frame(reader: ReaderProcess) -> None:
    frame = _frame(300, 400, seed=11)
    with SlotRing("w9", count=1) as ring:
        slot = ring.acquire(frame.nbytes, timeout=1.0)
        meta = slot.write_frame(frame)
        answer = reader.ask(op="read", id=slot.name, meta=meta)
        assert answer["assignment_failed"] and not answer["could_make_writeable"]
        # Even raw memory writes through the worker's mapping fault: it is mapped read-only.
        script = (
            "import ctypes, json, sys\n"
            "from procvision_algorithm_sdk.shared_memory import read_image_from_shared_memory\n"
            "image = read_image_from_shared_memory(sys.argv[1], json.loads(sys.argv[2]))\n"
            "print('attached', flush=True)\n"
            "ctypes.memset(image.ctypes.data, 0, 64)\n"
            "print('wrote', flush=True)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script, slot.name, json.dumps(meta)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == -signal.SIGSEGV
        assert done.stdout == "attached\n"
        after = reader.ask(op="read", id=slot.name, meta=meta)
        assert after["sha"] == _sha(frame) and after["warnings"] == []
        slot.release()


def test_reader_killed_while_attached_leaves_nothing_after_close() -> None:
    frame = _frame(1200, 1920, seed=5)
    ring = SlotRing("w10", count=2, initial_bytes=frame.nbytes)
    names = ring.names
    child = ReaderProcess()
    try:
        slot = ring.acquire(frame.nbytes, timeout=1.0)
        meta = slot.write_frame(frame)
        answer = child.ask(op="read", id=slot.name, meta=meta, hold=True)
        assert answer["sha"] == _sha(frame)
        child.kill()
        assert child.proc.returncode == -signal.SIGKILL
        # The reader's death did not take the Runner's segments with it.
        assert all(_exists(n) for n in names)
        slot.release()
    finally:
        child.kill()
        ring.close()
    assert not any(_exists(n) for n in names)


WRITER_SCRIPT = """
import json, sys
import numpy as np
from procvision_runner.slots import SlotRing
from procvision_algorithm_sdk import shared_memory as sm, segment as seg
ring = SlotRing("doomed", count=2, initial_bytes=4096)
slot = ring.acquire(100, timeout=1.0)
slot.write_frame(np.ones((5, 5, 3), np.uint8))
sm.write_image_array_to_shared_memory(sys.argv[1], np.ones((5, 5), np.uint8))
print(json.dumps(ring.names + [seg.segment_name_for_id(sys.argv[1])]), flush=True)
sys.stdin.readline()
"""


def test_killed_writer_segments_are_removed_by_the_next_rings_sweep() -> None:
    shm_id = f"doomed-{os.getpid()}-{time.monotonic_ns()}"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER_SCRIPT, shm_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        names = json.loads(writer.stdout.readline())
    finally:
        writer.kill()
        writer.communicate(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    assert len(names) == 3 and all(_exists(n) for n in names)
    next_runner = subprocess.run(
        [
            sys.executable,
            "-c",
            "from procvision_runner.slots import SlotRing; SlotRing('next', 1, 10).close()",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert next_runner.returncode == 0, next_runner.stderr
    assert not any(_exists(n) for n in names)


def test_sweep_leaves_live_owners_alone() -> None:
    with SlotRing("live", count=1, initial_bytes=10) as ring:
        assert not set(ring.names) & set(startup_sweep(force=True))
        assert all(_exists(n) for n in ring.names)


@pytest.mark.slow
def test_ten_thousand_cycles_without_fd_or_mapping_growth(reader: ReaderProcess) -> None:
    cycles = 10_000
    generation_length = 50  # a fresh ring every 50 frames: create, attach, retire, unlink churn
    ring = SlotRing("cycle", count=2, initial_bytes=16 * 16 * 3)
    baseline_parent = baseline_child = None
    try:
        for cycle in range(cycles):
            if cycle and cycle % generation_length == 0:
                ring.close()
                ring = SlotRing("cycle", count=2, initial_bytes=16 * 16 * 3)
            value = cycle % 251
            slot = ring.acquire(16 * 16 * 3, timeout=5.0)
            meta = slot.write_frame(np.full((16, 16, 3), value, np.uint8))
            answer = reader.ask(op="read", id=slot.name, meta=meta, digest="sum")
            assert answer["first"] == [value] * 3 and answer["sum"] == value * 768
            slot.release()
            if cycle == 1000:
                baseline_parent = _counts()
                baseline_child = reader.ask(op="stats")
    finally:
        ring.close()
    assert baseline_parent is not None and baseline_child is not None
    fds, maps = _counts()
    child = reader.ask(op="stats")
    # A leak of one per cycle would show up as thousands; allocator noise is a handful.
    assert fds <= baseline_parent[0]
    assert maps <= baseline_parent[1] + 8
    assert child["fds"] <= baseline_child["fds"]
    assert child["maps"] <= baseline_child["maps"] + 8
    assert len(child["cached"]) <= 8
