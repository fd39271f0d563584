"""A stand-in for the adapter-era desktop host (original SDK 0.0.6/0.0.7) driving our adapter.

It speaks exactly as that host did: frames as legacy files (`<PROC_SHM_DIR>/<safe id>.npy` or
`.bin`), `data`-wrapped calls, execute without a phase, explicit step hooks each with its own
session id, teardown when its window closes and setup when it reopens, `{"type": "ping"}`
without a request_id. The algorithm is the example package on its real images: every verdict
must match the ground truth (a zero image would make "board not found" NG everywhere).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from procvision_algorithm_sdk import protocol
from procvision_algorithm_sdk.legacy_frames import safe_id

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "algorithm-example"
TRUTH = json.loads((EXAMPLE / "images" / "ground_truth.json").read_text(encoding="utf-8"))
TESTS = Path(__file__).resolve().parents[1]
DEADLINE_S = 60.0


class AdapterEraHost:
    """The host side of one worker, as the adapter-era desktop host spoke to it."""

    def __init__(self, root: Path, frames: Path, env: dict[str, str] | None = None) -> None:
        self.frames = frames
        full_env = dict(os.environ)
        full_env.update(
            {
                "PROC_ALGO_ROOT": str(root),
                "PROC_SHM_DIR": str(frames),
                "PROC_STRICT_IMAGES": "1",  # a frame the worker cannot read fails loudly
                "PYTHONPATH": str(TESTS),
            }
        )
        full_env.update(env or {})
        self.stderr = open(frames.parent / f"worker-{uuid.uuid4().hex}.err", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "procvision_algorithm_sdk.adapter"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            cwd=root,
            env=full_env,
        )
        self.hello = self.recv()
        # The host's own hello, as the 0.0.7 tools sent it.
        self.send(
            {
                "type": "hello",
                "runner_version": "dev",
                "heartbeat_interval_ms": 5000,
                "heartbeat_grace_ms": 2000,
            }
        )

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(protocol.encode_frame(message))
        self.proc.stdin.flush()

    def recv(self) -> dict[str, Any]:
        box: list[Any] = []
        reader = threading.Thread(
            target=lambda: box.append(protocol.read_frame(self.proc.stdout)), daemon=True
        )
        reader.start()
        reader.join(DEADLINE_S)
        assert box and box[0] is not None, f"no frame within {DEADLINE_S} s: {self.err_text()}"
        frame: dict[str, Any] = box[0]
        return frame

    def err_text(self) -> str:
        if not self.stderr.closed:
            self.stderr.flush()
        return Path(self.stderr.name).read_text(encoding="utf-8", errors="replace")[-4000:]

    def call(self, data: dict[str, Any]) -> dict[str, Any]:
        request_id = str(uuid.uuid4())
        self.send({"type": "call", "request_id": request_id, "data": data})
        frame = self.recv()
        assert frame["request_id"] == request_id, frame
        return frame

    def ping(self) -> None:
        self.send({"type": "ping"})
        pong = self.recv()
        assert (pong["type"], pong["request_id"], pong["status"]) == ("pong", None, "OK")

    def put_frame(self, shared_mem_id: str, image: Path, as_file: str) -> dict[str, Any]:
        """Hand a frame over the way that host did; return its image_meta."""
        with Image.open(image) as img:
            width, height = img.size
            rgb = np.asarray(img.convert("RGB"))
        stem = self.frames / safe_id(shared_mem_id)
        if as_file == "npy":
            np.save(str(stem) + ".npy", rgb)
        else:
            (Path(str(stem) + ".bin")).write_bytes(image.read_bytes())
        return {
            "width": width,
            "height": height,
            "timestamp_ms": 0,
            "camera_id": "cam-1",
            "color_space": "RGB",
        }

    def drop_frame(self, shared_mem_id: str) -> None:
        for suffix in (".npy", ".bin"):
            (self.frames / (safe_id(shared_mem_id) + suffix)).unlink(missing_ok=True)

    def inspect(self, pid: str, session: str, step: int, image: Path, as_file: str) -> Any:
        """One step as the host ran it: explicit hooks around pre and a phase-less execute."""
        shared_mem_id = f"dev-shm:{session}:{step}"
        meta = self.put_frame(shared_mem_id, image, as_file)
        base = {
            "step_index": step,
            "pid": pid,
            "user_params": {},
            "shared_mem_id": shared_mem_id,
            "image_meta": meta,
        }
        context = {"product_code": pid, "trace_id": session}
        try:
            start = self.call(
                {
                    "phase": "on_step_start",
                    "step_index": step,
                    "pid": pid,
                    "session": {"id": f"step-start-{step}", "context": context},
                }
            )
            assert (start["status"], start["data"]["ran"]) == ("OK", True), start
            pre = self.call(
                {**base, "phase": "pre", "session": {"id": session, "context": context}}
            )
            assert pre["status"] == "OK", pre
            result = self.call({**base, "session": {"id": session, "context": context}})
            assert result["type"] == "result" and result["data"]["phase"] == "execute", result
            finish = self.call(
                {
                    "phase": "on_step_finish",
                    "step_index": step,
                    "pid": pid,
                    "session": {"id": f"step-finish-{step}", "context": context},
                    "result": {"status": result["status"], "data": result["data"]},
                }
            )
            assert (finish["status"], finish["data"]["ran"]) == ("OK", True), finish
        finally:
            self.drop_frame(shared_mem_id)
        return result

    def close(self) -> int:
        self.send({"type": "shutdown"})
        ack = self.recv()
        assert (ack["type"], ack["status"]) == ("shutdown", "OK"), ack
        try:
            return self.proc.wait(timeout=DEADLINE_S)
        finally:
            self.stderr.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=DEADLINE_S)
        self.stderr.close()


@pytest.fixture
def frames(tmp_path: Path) -> Path:
    directory = tmp_path / "procvision_dev_shm"
    directory.mkdir()
    return directory


@pytest.mark.slow
def test_example_verdicts_through_the_adapter_era_host(frames: Path) -> None:
    host = AdapterEraHost(EXAMPLE, frames)
    try:
        assert host.hello["type"] == "hello"
        samples = [
            ("ok_01.png", "npy"),
            ("ng_missing_1.png", "npy"),
            ("no_board.png", "npy"),
            ("ok_04.jpg", "bin"),
            ("ng_missing_1.jpg", "bin"),
        ]
        for number, (name, as_file) in enumerate(samples):
            if number == 3:
                # The operator closes the inspection window and opens it again.
                closed = host.call({"phase": "teardown"})
                assert (closed["status"], closed["data"]["ran"]) == ("OK", True), closed
                host.ping()
                opened = host.call({"phase": "setup"})
                assert (opened["status"], opened["data"]["ran"]) == ("OK", True), opened
            host.ping()
            session = f"detect-{number}"
            truth = TRUTH["images"][name]
            for step in (1, 2):
                result = host.inspect("p001", session, step, EXAMPLE / "images" / name, as_file)
                assert result["status"] == "OK", result
                assert result["data"]["result_status"] == truth[f"step{step}"], (name, step)
        assert host.close() == 0
    finally:
        host.kill()
    assert list(frames.iterdir()) == []
    assert "image load failed" not in host.err_text()


def test_hooks_run_exactly_once_per_host_call(frames: Path, tmp_path: Path) -> None:
    """With the probe algorithm: each explicit hook runs once, none runs implicitly."""
    log = tmp_path / "probe.log"
    project = tmp_path / "probe"
    project.mkdir()
    (project / "manifest.json").write_text(
        json.dumps({"entry_point": "algos.adapter.probe:Probe"}), encoding="utf-8"
    )
    host = AdapterEraHost(project, frames, env={"PROBE_LOG": str(log)})
    try:
        image = EXAMPLE / "images" / "ok_01.png"
        for step in (1, 2):
            result = host.inspect("P1", "run-1", step, image, "npy")
            assert result["status"] == "OK" and result["data"]["result_status"] == "OK"
        assert host.call({"phase": "teardown"})["data"]["ran"] is True
        assert host.call({"phase": "setup"})["data"]["ran"] is True
        assert host.close() == 0
    finally:
        host.kill()
    assert log.read_text(encoding="utf-8").splitlines() == [
        "init",
        "setup",
        "on_step_start step-start-1 1 P1",
        "on_step_finish step-finish-1 1 OK",
        "on_step_start step-start-2 2 P1",
        "on_step_finish step-finish-2 2 OK",
        "teardown",
        "setup",
        "teardown",
    ]
    assert list(frames.iterdir()) == []


def test_a_call_without_phase_is_execute_at_the_top_level_too(frames: Path, tmp_path: Path) -> None:
    project = tmp_path / "probe"
    project.mkdir()
    (project / "manifest.json").write_text(
        json.dumps({"entry_point": "algos.adapter.probe:Probe"}), encoding="utf-8"
    )
    host = AdapterEraHost(project, frames, env={"PROBE_LOG": str(tmp_path / "log")})
    try:
        host.send(
            {
                "type": "call",
                "request_id": "top",
                "step_index": 1,
                "pid": "P1",
                "session": {"id": "s"},
            }
        )
        top = host.recv()
        assert (top["request_id"], top["status"], top["data"]["phase"]) == ("top", "OK", "execute")
        nulled = host.call({"phase": None, "step_index": 1, "pid": "P1", "session": {"id": "s"}})
        assert (nulled["status"], nulled["data"]["phase"]) == ("OK", "execute")
        assert host.close() == 0
    finally:
        host.kill()
