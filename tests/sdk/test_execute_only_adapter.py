"""The adapter speaks the execute-only host's frames (original SDK 0.3.x; contract section 11).

A stand-in for that host: real adapter subprocesses, real shared-memory segments, frames exactly
as the original host sends them (no phase, fields in `data` or at the top level, ping without a
request_id).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.adapter_process import AdapterProcess
from PIL import Image

from procvision_algorithm_sdk import BaseAlgorithm, protocol, write_image_array_to_shared_memory
from procvision_algorithm_sdk.generation import EXECUTE_ONLY, LIFECYCLE, api_of
from procvision_algorithm_sdk.shared_memory import dev_clear_shared_memory

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "execute-only-example"
TRUTH = json.loads((EXAMPLE / "images" / "ground_truth.json").read_text(encoding="utf-8"))
ORIGINAL_CAPABILITIES = ["ping", "call", "shutdown", "shared_memory:v1", "execute"]


@pytest.fixture
def images() -> Iterator[dict[str, Any]]:
    """Write arrays into our segments under unique ids; every segment is removed afterwards."""
    written: list[str] = []

    def put(array: np.ndarray, tag: str) -> tuple[str, dict[str, Any]]:
        shm_id = f"exo-{os.getpid()}-{uuid.uuid4().hex[:8]}-{tag}"
        meta = write_image_array_to_shared_memory(shm_id, array)
        written.append(shm_id)
        meta.update(timestamp_ms=1, camera_id="cam-1")
        return shm_id, meta

    yield {"put": put}
    for shm_id in written:
        dev_clear_shared_memory(shm_id)


def host_call(
    cur: tuple[str, dict[str, Any]],
    guide: tuple[str, dict[str, Any]],
    *,
    step_index: int = 1,
    step_desc: str = "步骤 1: 安装螺丝",
    guide_info: Any = None,
    top_level: bool = False,
    request_id: str = "",
) -> dict[str, Any]:
    """The original host's call frame: no phase."""
    fields = {
        "step_index": step_index,
        "step_desc": step_desc,
        "guide_info": guide_info if guide_info is not None else [],
        "cur_image_shm_id": cur[0],
        "cur_image_meta": cur[1],
        "guide_image_shm_id": guide[0],
        "guide_image_meta": guide[1],
    }
    frame: dict[str, Any] = {"type": "call", "request_id": request_id or uuid.uuid4().hex}
    if top_level:
        frame.update(fields)
    else:
        frame["data"] = fields
    return frame


def exchange(adapter: AdapterProcess, frame: dict[str, Any]) -> dict[str, Any]:
    adapter.send(frame)
    answer = adapter.recv()
    assert answer["request_id"] == frame["request_id"], answer
    return answer


def load(name: str) -> np.ndarray:
    return np.asarray(Image.open(EXAMPLE / "images" / name).convert("RGB"))


def test_detection_by_signature() -> None:
    from algos.adapter.exonly_algos import Echo, NoShape, Renamed
    from algos.adapter.probe import Probe

    assert api_of(Echo) == EXECUTE_ONLY
    assert api_of(Renamed) == EXECUTE_ONLY
    assert api_of(Probe) == LIFECYCLE
    assert api_of(NoShape) is None
    assert isinstance(Echo(), BaseAlgorithm)
    with pytest.raises(TypeError, match="execute-only execute\\(step_index, step_desc"):
        NoShape()
    # The lifecycle base keeps its three abstract methods.
    assert BaseAlgorithm.__abstractmethods__ == {"get_info", "pre_execute", "execute"}


def test_example_verdicts_through_host_frames(tmp_path: Path, images: dict[str, Any]) -> None:
    guide = images["put"](load(TRUTH["guide_image"]), "guide")
    guide_info = json.loads((EXAMPLE / "images" / TRUTH["guide_info"]).read_text())
    env = {"PROC_ALGO_ROOT": str(EXAMPLE)}
    with AdapterProcess(tmp_path, entry=None, env=env, cwd=EXAMPLE) as adapter:
        hello = adapter.hello
        assert hello is not None and hello["api"] == EXECUTE_ONLY
        assert hello["capabilities"][:5] == ORIGINAL_CAPABILITIES
        assert hello["entry_point"] == "part_presence.main:PartPresenceAlgorithm"
        adapter.send(
            {
                "type": "hello",
                "runner_version": "dev",
                "heartbeat_interval_ms": 5000,
                "heartbeat_grace_ms": 2000,
            }
        )
        for number, (name, truth) in enumerate(sorted(TRUTH["samples"].items())):
            cur = images["put"](load(name), f"cur{number}")
            answer = exchange(
                adapter,
                host_call(
                    cur,
                    guide,
                    step_desc=TRUTH["step_desc"],
                    guide_info=guide_info,
                    top_level=bool(number % 2),
                ),
            )
            assert answer["type"] == "result" and answer["status"] == "OK", answer
            data = answer["data"]
            assert data["result_status"] == truth["result_status"], (name, answer)
            assert sorted(r["label"] for r in data["defect_rects"]) == truth["missing"], name
            assert data["step_index"] == 1
            assert answer["diagnostics"] == {"positions_checked": 4}
        # A ping without request_id (the original host's) is answered with request_id null.
        adapter.send({"type": "ping"})
        pong = adapter.recv()
        assert pong["type"] == "pong" and pong["request_id"] is None and pong["status"] == "OK"
        # guide_info empty: the algorithm's own error_code and top-level debug are forwarded.
        cur = images["put"](load("cur_ok_01.png"), "again")
        answer = exchange(adapter, host_call(cur, guide, step_index=3, guide_info=[]))
        assert answer["status"] == "ERROR" and answer["error_code"] == "1006", answer
        assert answer["debug"] == {"step_index": 3, "step_desc": "步骤 1: 安装螺丝"}
        adapter.send({"type": "shutdown"})
        assert adapter.recv()["type"] == "shutdown"
        assert adapter.wait() == 0


def test_frames_fields_and_refusals(tmp_path: Path, images: dict[str, Any]) -> None:
    cur = images["put"](np.full((48, 64, 3), 7, np.uint8), "cur")
    guide = images["put"](np.full((40, 30, 3), 9, np.uint8), "guide")
    info = [{"label": "1", "posList": [{"x": 1, "y": 2, "width": 3, "height": 4}]}]
    with AdapterProcess(tmp_path, entry="algos.adapter.exonly_algos:Echo") as adapter:
        assert adapter.hello is not None and adapter.hello["api"] == EXECUTE_ONLY
        answer = exchange(
            adapter, host_call(cur, guide, step_index=2, step_desc="d", guide_info=info)
        )
        debug = answer["data"]["debug"]
        assert debug["step_index"] == 2 and debug["step_desc"] == "d"
        assert debug["guide_info"] == info
        assert debug["cur"] == [[48, 64, 3], 7, False]  # a read-only view of our segment
        assert debug["guide"] == [[40, 30, 3], 9]
        assert debug["cur_is_view"] is True
        assert answer["debug"] == {"top": "level"}
        # step_index missing: 1, as the original adapter did; step_desc/guide_info default.
        frame = host_call(cur, guide)
        del frame["data"]["step_index"], frame["data"]["step_desc"], frame["data"]["guide_info"]
        debug = exchange(adapter, frame)["data"]["debug"]
        assert (debug["step_index"], debug["step_desc"], debug["guide_info"]) == (1, "", [])
        # A missing image id is refused (1006), the worker lives on.
        frame = host_call(cur, guide)
        del frame["data"]["guide_image_shm_id"]
        refused = exchange(adapter, frame)
        assert refused["type"] == "error" and refused["error_code"] == "1006", refused
        assert "guide_image_shm_id" in refused["message"]
        # The algorithm's own code and debug are forwarded (the original dropped them).
        answer = exchange(adapter, host_call(cur, guide, step_desc="refuse"))
        assert (answer["status"], answer["error_code"], answer["message"]) == (
            "ERROR",
            "E-CAM-7",
            "guide image not usable",
        )
        assert answer["debug"] == {"why": "asked", "step": 1}
        # Result checks run: a rect outside the current image is 1007.
        answer = exchange(adapter, host_call(cur, guide, step_desc="bad-rect"))
        assert answer["status"] == "ERROR" and answer["error_code"] == "1007", answer
        answer = exchange(adapter, host_call(cur, guide, step_desc="raise"))
        assert answer["error_code"] == "1009" and "asked to fail" in answer["message"]
        # Without strict stdio, a print goes to stderr and the call is fine.
        answer = exchange(adapter, host_call(cur, guide, step_desc="print"))
        assert answer["status"] == "OK"
        # A lifecycle-only phase is refused clearly.
        adapter.send(protocol.call("p1", "pre", step_index=1, pid="A"))
        answer = adapter.recv()
        assert answer["type"] == "error" and "execute-only" in answer["message"]
        # The synthesized get_info (no manifest here: the class name stands in).
        info_answer = exchange(adapter, {"type": "call", "request_id": "i1", "phase": "info"})
        assert info_answer["data"]["info"]["api"] == EXECUTE_ONLY
        adapter.send({"type": "shutdown"})
        assert adapter.recv()["type"] == "shutdown"
        assert adapter.wait() == 0
        assert "hello from execute" in adapter.stderr()


def test_strict_stdio_pollution_is_1010(tmp_path: Path, images: dict[str, Any]) -> None:
    cur = images["put"](np.full((8, 8, 3), 1, np.uint8), "cur")
    guide = images["put"](np.full((8, 8, 3), 2, np.uint8), "guide")
    env = {"PROC_STRICT_STDIO": "1"}
    with AdapterProcess(tmp_path, entry="algos.adapter.exonly_algos:Echo", env=env) as adapter:
        for desc in ("print", "c-print"):
            answer = exchange(adapter, host_call(cur, guide, step_desc=desc))
            assert answer["type"] == "error" and answer["error_code"] == "1010", answer
            assert "stdout" in answer["message"]
        clean = exchange(adapter, host_call(cur, guide, step_desc="quiet"))
        assert clean["type"] == "result" and clean["status"] == "OK", clean
        adapter.send({"type": "shutdown"})
        assert adapter.recv()["type"] == "shutdown"
        assert adapter.wait() == 0
        stderr = adapter.stderr()
        assert "hello from execute" in stderr and "raw bytes on fd 1" in stderr


def test_neither_shape_is_refused_at_load(tmp_path: Path) -> None:
    with AdapterProcess(
        tmp_path, entry="algos.adapter.exonly_algos:NoShape", expect_hello=False
    ) as adapter:
        frame = adapter.recv()
        assert frame["type"] == "error" and frame["request_id"] is None
        assert "lifecycle" in frame["message"] and "execute-only" in frame["message"]
        assert adapter.wait() == 2


@pytest.mark.parametrize("how", ["env", "yaml", "pyproject", "fallback"])
def test_entry_discovery_of_the_original_adapter(tmp_path: Path, how: str) -> None:
    project = tmp_path / "project"
    package = project / ("algorithm" if how == "fallback" else "field_algo")
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "main.py").write_text(
        "from procvision_algorithm_sdk import BaseAlgorithm\n\n\n"
        "class Algorithm(BaseAlgorithm):\n"
        "    def execute(self, step_index, step_desc, cur_image, guide_image, guide_info):\n"
        "        return {'status': 'OK', 'data': {'result_status': 'OK'}}\n"
    )
    env: dict[str, str] = {}
    if how == "env":
        env["PROC_ENTRY_POINT"] = "field_algo.main:Algorithm"
        env["PROC_ALGO_ROOT"] = str(project)
    elif how == "yaml":
        (project / "manifest.yaml").write_text("name: x\nentry_point: field_algo.main:Algorithm\n")
    elif how == "pyproject":
        (project / "pyproject.toml").write_text(
            '[tool.procvision.algorithm]\nentry_point = "field_algo.main:Algorithm"\n'
        )
    with AdapterProcess(tmp_path, entry=None, env=env, cwd=project) as adapter:
        assert adapter.hello is not None and adapter.hello["api"] == EXECUTE_ONLY
        assert adapter.hello["entry_point"].endswith("main:Algorithm")


def test_legacy_frame_files_from_the_original_host(tmp_path: Path) -> None:
    """The original host writes frames as files (.npy for arrays, .bin for encoded bytes)."""
    shm_dir = tmp_path / "shm"
    shm_dir.mkdir()
    guide_array = load(TRUTH["guide_image"])
    guide_info = json.loads((EXAMPLE / "images" / TRUTH["guide_info"]).read_text())
    np.save(shm_dir / "dev-shm_s1_guide.npy", guide_array)
    env = {"PROC_ALGO_ROOT": str(EXAMPLE), "PROC_SHM_DIR": str(shm_dir), "PROC_STRICT_STDIO": "1"}
    meta = {"width": 640, "height": 480, "timestamp_ms": 1, "camera_id": "c", "color_space": "RGB"}
    with AdapterProcess(tmp_path, entry=None, env=env, cwd=EXAMPLE) as adapter:
        for name, truth in sorted(TRUTH["samples"].items()):
            # encoded bytes as the original dev tools wrote them: `<safe id>.bin`
            cur_id = f"dev-shm:{name}:cur"
            safe = cur_id.replace(":", "_")
            (shm_dir / f"{safe}.bin").write_bytes((EXAMPLE / "images" / name).read_bytes())
            answer = exchange(
                adapter,
                host_call((cur_id, meta), ("dev-shm:s1:guide", meta), guide_info=guide_info),
            )
            assert answer["status"] == "OK", answer
            assert answer["data"]["result_status"] == truth["result_status"], name
            labels = sorted(r["label"] for r in answer["data"]["defect_rects"])
            assert labels == truth["missing"], name
        adapter.send({"type": "shutdown"})
        assert adapter.recv()["type"] == "shutdown"


def test_manifest_and_guide_info_checks() -> None:
    from procvision_algorithm_sdk.contract import check_manifest
    from procvision_algorithm_sdk.guide import check_guide_info

    manifest = json.loads((EXAMPLE / "manifest.json").read_text(encoding="utf-8"))
    assert "supported_pids" not in manifest
    assert check_manifest(manifest) == []
    assert [p.where for p in check_manifest(dict(manifest, steps=[]))] == [
        "manifest.supported_pids"
    ]
    assert [p.where for p in check_manifest(dict(manifest, api="other"))] == ["manifest.api"]
    good = [{"label": "1", "posList": [{"x": 94, "y": 269, "width": 319, "height": 398}]}]
    assert check_guide_info(good, 1920, 1200) == []
    (outside,) = check_guide_info(good, 400, 1200)
    assert (outside.code, outside.where) == ("1007", "guide_info[0].posList[0]")
    assert check_guide_info({"label": "1"})[0].code == "1006"
    (missing,) = check_guide_info([{"label": "1"}])
    assert (missing.code, missing.where) == ("1006", "guide_info[0].posList")
