"""Frame leases at the registry level: real segments, real headers, real client processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from procvision_algorithm_sdk import segment as seg
from procvision_runner.leases import LeaseError, LeaseLimits, LeaseRegistry

SHM = "/dev/shm"


def exists(name: str) -> bool:
    return os.path.exists(os.path.join(SHM, name))


@pytest.fixture()
def registry():
    reg = LeaseRegistry(LeaseLimits(max_per_client=3, max_bytes_per_client=4 * 1024**2))
    try:
        yield reg
    finally:
        names = reg.names()
        reg.close()
        assert not any(exists(n) for n in names), "close() left a segment behind"


def fill(description: dict, frame: np.ndarray, seq: int) -> None:
    """What a client does: map by name, write the pixels, commit a sequence number."""
    shm = seg.attach_segment(description["segment"])
    try:
        view = seg.payload_array(shm.buf, frame.shape, np.uint8)
        np.copyto(view, frame)
        del view
        seg.set_sequence(shm.buf, seq)
    finally:
        seg.close_quietly(shm)


def assert_refused(exc: pytest.ExceptionInfo[LeaseError], status: int, code: str) -> None:
    assert exc.value.status == status, exc.value
    assert exc.value.error_code == code, exc.value
    assert exc.value.message


def test_a_lease_carries_a_committed_frame_by_name(registry: LeaseRegistry) -> None:
    d = registry.create("cam-a", 48, 64, 3, client_pid=os.getpid())
    assert d["segment"].startswith(f"pvs_{os.getpid()}_") and exists(d["segment"])
    assert d["payload_offset"] == seg.HEADER_SIZE and d["payload_size"] == 48 * 64 * 3
    frame = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    fill(d, frame, 7)
    with registry.checkout(d["lease_id"], "cam-a", seq=7, geometry=(48, 64, 3)) as shared:
        assert (shared.name, shared.seq, shared.shape) == (d["segment"], 7, (48, 64, 3))
        # What the worker does: map read-only, read the very bytes the client wrote.
        mapping = seg.attach_segment_readonly(shared.name)
        try:
            got = np.frombuffer(mapping, np.uint8, frame.size, seg.HEADER_SIZE).reshape(48, 64, 3)
            assert np.array_equal(got, frame)
            del got
        finally:
            mapping.close()
    # reuse for the next frame is the normal case
    fill(d, frame[::-1].copy(), 8)
    with registry.checkout(d["lease_id"], "cam-a", seq=8) as shared:
        assert shared.seq == 8
    registry.release(d["lease_id"], "cam-a")
    assert not exists(d["segment"])


def test_forged_foreign_uncommitted_wrong_geometry_and_altered_headers_are_refused(
    registry: LeaseRegistry,
) -> None:
    d = registry.create("cam-a", 10, 20, 3)
    with pytest.raises(LeaseError) as exc:
        registry.checkout(d["lease_id"], "cam-a").__enter__()
    assert_refused(exc, 409, "1002")  # nothing committed yet
    fill(d, np.zeros((10, 20, 3), np.uint8), 3)
    with pytest.raises(LeaseError) as exc:
        registry.checkout("fl_" + "A" * 24, "cam-a").__enter__()
    assert_refused(exc, 404, "1006")
    with pytest.raises(LeaseError) as exc:
        registry.checkout(d["lease_id"], "cam-b").__enter__()
    assert_refused(exc, 403, "1006")
    with pytest.raises(LeaseError) as exc:
        registry.checkout(d["lease_id"], "cam-a", geometry=(10, 21, 3)).__enter__()
    assert_refused(exc, 422, "1006")
    with pytest.raises(LeaseError) as exc:
        registry.checkout(d["lease_id"], "cam-a", seq=2).__enter__()
    assert_refused(exc, 409, "1002")  # a stale or future frame number
    shm = seg.attach_segment(d["segment"])
    try:  # a client that rewrites the header's geometry
        seg.write_header(shm.buf, seq=4, height=20, width=10, channels=3, payload_size=600)
    finally:
        seg.close_quietly(shm)
    with pytest.raises(LeaseError) as exc:
        registry.checkout(d["lease_id"], "cam-a").__enter__()
    assert_refused(exc, 422, "1002")
    with pytest.raises(LeaseError) as exc:
        registry.release(d["lease_id"], "cam-b")
    assert_refused(exc, 403, "1006")


def test_one_call_at_a_time_per_lease(registry: LeaseRegistry) -> None:
    d = registry.create("cam-a", 4, 4, 1)
    fill(d, np.ones((4, 4, 1), np.uint8), 1)
    with registry.checkout(d["lease_id"], "cam-a") as shared:
        assert shared.shape == (4, 4)
        with pytest.raises(LeaseError) as exc:
            registry.checkout(d["lease_id"], "cam-a").__enter__()
        assert_refused(exc, 409, "1005")
        with pytest.raises(LeaseError) as exc:
            registry.release(d["lease_id"], "cam-a")
        assert_refused(exc, 409, "1005")
    with registry.checkout(d["lease_id"], "cam-a"):
        pass


def test_count_and_bytes_are_bounded_per_client(registry: LeaseRegistry) -> None:
    ids = [registry.create("cam-a", 8, 8, 3)["lease_id"] for _ in range(3)]
    with pytest.raises(LeaseError) as exc:
        registry.create("cam-a", 8, 8, 3)
    assert_refused(exc, 429, "1006")
    registry.create("cam-b", 8, 8, 3)  # another client has its own budget
    registry.release(ids[0], "cam-a")
    with pytest.raises(LeaseError) as exc:
        registry.create("cam-a", 2048, 2048, 3)  # 12 MiB > 4 MiB per client
    assert_refused(exc, 429, "1006")
    for bad in [(0, 8, 3), (8, 70_000, 3), (8, 8, 2), (8, 8, 4)]:
        with pytest.raises(LeaseError) as exc:
            registry.create("cam-a", *bad)
        assert_refused(exc, 422, "1006")
    assert registry.count("cam-a") == 2 and registry.count() == 3


def test_idle_leases_expire() -> None:
    reg = LeaseRegistry(LeaseLimits(idle_s=0.2, reap_interval_s=0.05))
    try:
        d = reg.create("cam-a", 8, 8, 3)
        deadline = time.monotonic() + 30
        while exists(d["segment"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not exists(d["segment"]) and reg.count() == 0
        with pytest.raises(LeaseError) as exc:
            reg.checkout(d["lease_id"], "cam-a").__enter__()
        assert_refused(exc, 404, "1006")
    finally:
        reg.close()


def test_a_lease_in_use_does_not_expire() -> None:
    reg = LeaseRegistry(LeaseLimits(idle_s=0.05, reap_interval_s=3600))
    try:
        d = reg.create("cam-a", 8, 8, 3)
        fill(d, np.zeros((8, 8, 3), np.uint8), 1)
        with reg.checkout(d["lease_id"], "cam-a"):
            time.sleep(0.1)
            assert reg.reap() == []
            assert exists(d["segment"])
        assert reg.reap(time.monotonic() + 1.0) == [d["lease_id"]]
    finally:
        reg.close()


def test_the_leases_of_a_client_process_that_died_are_reclaimed() -> None:
    """A client SIGKILLed after writing its frame leaves nothing in /dev/shm."""
    reg = LeaseRegistry(LeaseLimits(idle_s=3600, reap_interval_s=0.05))
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", "import sys, time; sys.stdin.read(); time.sleep(3600)"],
            stdin=subprocess.PIPE,
        )
        try:
            d = reg.create("cam-k", 32, 32, 3, client_pid=child.pid)
            fill(d, np.full((32, 32, 3), 9, np.uint8), 1)
            assert exists(d["segment"])
        finally:
            child.kill()
            child.wait(30)
        deadline = time.monotonic() + 30
        while exists(d["segment"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not exists(d["segment"]) and reg.count() == 0
    finally:
        reg.close()


def test_close_unlinks_every_segment_and_refuses_new_leases() -> None:
    reg = LeaseRegistry()
    names = [reg.create(f"c{i}", 16, 16, 3)["segment"] for i in range(3)]
    assert all(exists(n) for n in names)
    reg.close()
    reg.close()
    assert not any(exists(n) for n in names)
    with pytest.raises(LeaseError) as exc:
        reg.create("c0", 16, 16, 3)
    assert exc.value.status == 503


def test_a_segment_left_by_a_dead_runner_is_swept() -> None:
    """Lease segments carry the Runner's pid in their name: the stale sweep knows them."""
    code = textwrap.dedent(
        """
        import os, sys
        from procvision_runner.leases import LeaseRegistry
        reg = LeaseRegistry()
        print(reg.create("c", 8, 8, 3)["segment"], flush=True)
        os._exit(0)  # no close(): a crashed Runner
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    name = out.stdout.strip()
    assert exists(name)
    assert name in seg.sweep_stale_segments()
    assert not exists(name)


def test_the_worker_reads_the_leased_segment_itself(registry: LeaseRegistry) -> None:
    """Runner.run_step with a checked-out lease: the worker maps that very segment (no slot)."""
    from procvision_runner import Runner, RunnerConfig

    marker = Path(__file__).resolve().parents[1] / "algos" / "runner" / "marker"
    d = registry.create("cam-a", 120, 160, 3)
    frame = np.full((120, 160, 3), 40, np.uint8)
    frame[30:40, 50:62] = (255, 0, 0)
    fill(d, frame, 5)
    with Runner(RunnerConfig(heartbeat_interval_ms=5000)) as runner:
        runner.load(marker)
        with registry.checkout(d["lease_id"], "cam-a", seq=5) as shared:
            out = runner.run_step("m1", 1, shared, session_id="s1")
        assert out["pre_execute"]["status"] == "OK", out
        ex = out["execute"]
        assert ex["status"] == "OK" and ex["data"]["result_status"] == "NG", ex
        rect = ex["data"]["defect_rects"][0]
        assert (rect["x"], rect["y"], rect["width"], rect["height"]) == (50, 30, 12, 10)
        assert ex["debug"] == {"shared_mem_id": d["segment"], "shm_seq": 5}
        assert set(ex["timings"]) >= {"queue_ms", "transfer_ms", "algorithm_ms", "total_ms"}
        # a one-channel lease is GRAY; RGB asked of it is corrected, GRAY of three is refused
        g = registry.create("cam-a", 8, 8, 1)
        fill(g, np.zeros((8, 8, 1), np.uint8), 1)
        with registry.checkout(g["lease_id"], "cam-a") as shared:
            one = runner.run_step("m1", 1, shared)
        assert one["pre_execute"]["status"] == "OK", one
        assert one["execute"]["data"]["result_status"] == "OK", one
        with registry.checkout(d["lease_id"], "cam-a") as shared:
            gray = runner.run_step("m1", 1, shared, color_space="GRAY")
        assert gray["pre_execute"]["error_code"] == "1006", gray
