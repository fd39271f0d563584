"""The example package's verdicts match the ground truth, through the public API only."""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from procvision_algorithm_sdk import (
    BaseAlgorithm,
    Session,
    StructuredLogger,
    write_image_array_to_shared_memory,
)
from procvision_algorithm_sdk.contract import (
    check_execute_result,
    check_info,
    check_manifest,
    check_pre_execute_result,
    find_step,
    validate_user_params,
)
from procvision_algorithm_sdk.shared_memory import dev_clear_shared_memory

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "algorithm-example"
IMAGES_DIR = EXAMPLE_DIR / "images"
GROUND_TRUTH = json.loads((IMAGES_DIR / "ground_truth.json").read_text(encoding="utf-8"))
SAMPLES = sorted(GROUND_TRUTH["images"])
MANIFEST = json.loads((EXAMPLE_DIR / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def example_class() -> Iterator[type[BaseAlgorithm]]:
    """Import the entry point from the project folder, as the adapter does."""
    sys.path.insert(0, str(EXAMPLE_DIR))
    try:
        module_name, class_name = MANIFEST["entry_point"].split(":")
        yield getattr(importlib.import_module(module_name), class_name)
    finally:
        sys.path.remove(str(EXAMPLE_DIR))


@pytest.fixture
def shm_id() -> Iterator[str]:
    """A unique segment id; its segment is unlinked afterwards whatever happens."""
    name = f"pvex{os.getpid()}{uuid.uuid4().hex[:8]}"
    yield name
    dev_clear_shared_memory(name)


def _load(file: str) -> np.ndarray:
    with Image.open(IMAGES_DIR / file) as image:
        return np.asarray(image.convert("RGB"))


def _publish(shm_id: str, pixels: np.ndarray) -> dict[str, Any]:
    meta = write_image_array_to_shared_memory(shm_id, pixels)
    return {**meta, "timestamp_ms": 1_700_000_000_000, "camera_id": "cam-1"}


def _params(info: dict[str, Any], step: int, given: dict[str, Any], w: int, h: int) -> dict:
    """Apply the step's defaults the way the Runner does before calling the algorithm."""
    step_spec = find_step(info, step)
    assert step_spec is not None
    params, problems = validate_user_params(step_spec["params"], given, w, h)
    assert problems == []
    return params


def _run_step(
    algo: BaseAlgorithm,
    step: int,
    session: Session,
    given: dict[str, Any],
    shm_id: str,
    meta: dict[str, Any],
    pid: str = "p001",
) -> tuple[dict[str, Any], dict[str, Any]]:
    w, h = meta["width"], meta["height"]
    params = _params(algo.get_info(), step, given, w, h)
    algo.on_step_start(step, session, session.context)
    pre = algo.pre_execute(step, pid, session, params, shm_id, meta)
    assert check_pre_execute_result(pre) == [], pre
    result = algo.execute(step, pid, session, params, shm_id, meta)
    assert check_execute_result(result, w, h) == [], result
    algo.on_step_finish(step, session, result)
    # What the adapter ships must survive JSON unchanged (no numpy values hiding anywhere).
    assert json.loads(json.dumps(pre)) == pre
    assert json.loads(json.dumps(result)) == result
    return pre, result


def _centre(rect: dict[str, Any]) -> tuple[float, float]:
    return rect["x"] + rect["width"] / 2, rect["y"] + rect["height"] / 2


def _near_board(rect: dict[str, Any], truth: dict[str, int], tolerance: int = 3) -> bool:
    return all(abs(rect[k] - truth[k]) <= tolerance for k in ("x", "y", "width", "height"))


def test_samples_are_big_enough_and_cover_ok_ng_and_no_board():
    verdicts = {
        (e["step1"], e["step2"], len(e["missing_screws"])) for e in GROUND_TRUTH["images"].values()
    }
    assert {("OK", "OK", 0), ("OK", "NG", 1), ("OK", "NG", 2), ("NG", "NG", 0)} <= verdicts
    assert any(f.endswith(".jpg") for f in SAMPLES) and any(f.endswith(".png") for f in SAMPLES)
    for file in SAMPLES:
        with Image.open(IMAGES_DIR / file) as image:
            assert image.size[0] >= 1920 and image.size[1] >= 1200
    total = sum((IMAGES_DIR / f).stat().st_size for f in SAMPLES)
    assert total < 3 * 1024 * 1024


def test_manifest_agrees_with_get_info(example_class):
    info = example_class().get_info()
    assert check_info(info) == []
    assert check_manifest(MANIFEST, info) == []
    assert MANIFEST["name"] == "algorithm-example" and MANIFEST["version"] == "1.0.0"
    assert MANIFEST["supported_pids"] == ["p001", "p002"] == info["supported_pids"]
    assert MANIFEST["steps"] == info["steps"]
    assert [s["name"] for s in info["steps"]] == ["locate board", "check screws"]
    pyproject = (EXAMPLE_DIR / "pyproject.toml").read_text(encoding="utf-8")
    section = pyproject.split("[tool.procvision.algorithm]", 1)[1]
    assert re.search(r'entry_point\s*=\s*"([^"]+)"', section).group(1) == MANIFEST["entry_point"]
    requirements = (EXAMPLE_DIR / "requirements.txt").read_text(encoding="utf-8").split()
    names = {re.split(r"[<>=!~]", line)[0].lower() for line in requirements}
    assert {"numpy", "pillow", "procvision-algorithm-sdk"} <= names


@pytest.mark.parametrize("mode", ["fast", "accurate"])
@pytest.mark.parametrize("file", SAMPLES)
def test_verdicts_match_ground_truth(example_class, shm_id, file, mode):
    truth = GROUND_TRUTH["images"][file]
    pixels = _load(file)
    meta = _publish(shm_id, pixels)
    algo = example_class()
    algo.setup()
    session = Session(f"run-{file}", {"product_code": "p001", "trace_id": file})

    pre1, step1 = _run_step(algo, 1, session, {}, shm_id, meta)
    assert step1["data"]["result_status"] == truth["step1"]
    if truth["board"] is None:
        assert pre1["data"]["calibration_rects"] == []
        assert step1["data"]["ng_reason"] == "board not found"
        assert session.exists("board") and session.get("board") is None
    else:
        (calibration,) = pre1["data"]["calibration_rects"]
        assert calibration["label"] == "board"
        assert _near_board(calibration, truth["board"])
        assert _near_board(session.get("board"), truth["board"])
        assert step1["data"]["position_rects"][0]["label"] == "board"

    _, step2 = _run_step(algo, 2, session, {"mode": mode}, shm_id, meta)
    data = step2["data"]
    assert data["result_status"] == truth["step2"]
    missing = truth["missing_screws"]
    if truth["step2"] == "OK":
        assert "defect_rects" not in data
        assert len(data["position_rects"]) == len(truth["screws"])
    else:
        assert len(data["ng_reason"]) < 50
        assert len(data["defect_rects"]) == len(missing)
        assert all(r["label"] == "missing_screw" for r in data["defect_rects"])
        radius = GROUND_TRUTH["screw_radius_rel"] * (truth["board"] or {"width": 0})["width"]
        for rect, index in zip(data["defect_rects"], missing, strict=True):
            cx, cy = _centre(rect)
            ex, ey = truth["screws"][index]
            assert abs(cx - ex) <= radius / 2 and abs(cy - ey) <= radius / 2
        if truth["board"] is not None:
            assert len(data["position_rects"]) == len(truth["screws"]) - len(missing)
            assert data["debug"]["mode"] == mode
    diagnostics = algo.diagnostics.get()
    assert diagnostics["board_found"] is (truth["board"] is not None)
    assert isinstance(diagnostics["step1_latency_ms"], float)
    assert isinstance(diagnostics["step2_latency_ms"], float)
    if truth["board"] is not None:
        assert diagnostics["screws_missing"] == len(missing)
    algo.teardown()


def test_step2_without_a_board_in_the_session_locates_again(example_class, shm_id):
    file = "ng_missing_2.png"
    truth = GROUND_TRUTH["images"][file]
    meta = _publish(shm_id, _load(file))
    algo = example_class()
    sink = io.StringIO()
    algo.logger = StructuredLogger(sink)
    session = Session("fresh")
    pre, result = _run_step(algo, 2, session, {}, shm_id, meta)
    assert pre["message"] == "board not found"  # nothing stored yet at pre_execute time
    assert result["data"]["result_status"] == truth["step2"]
    assert len(result["data"]["defect_rects"]) == len(truth["missing_screws"])
    assert _near_board(session.get("board"), truth["board"])
    records = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert any(r["level"] == "warning" and "locating again" in r["message"] for r in records)


def test_zero_image_means_board_not_found(example_class, shm_id):
    meta = _publish(shm_id, np.zeros((1200, 1920, 3), dtype=np.uint8))
    algo = example_class()
    sink = io.StringIO()
    algo.logger = StructuredLogger(sink)
    session = Session("dark")
    _, step1 = _run_step(algo, 1, session, {}, shm_id, meta)
    _, step2 = _run_step(algo, 2, session, {}, shm_id, meta)
    # Step 1 recorded "no board", so step 2 trusts it instead of searching again.
    assert "locating again" not in sink.getvalue()
    for result in (step1, step2):
        assert result["data"]["result_status"] == "NG"
        assert result["data"]["ng_reason"] == "board not found"
        assert result["data"]["defect_rects"] == []


def test_missing_segment_reads_as_a_zero_image(example_class):
    # The seed's reader gives a zero image (with a logged warning) for an id with no data.
    meta = {"width": 1920, "height": 1200, "color_space": "RGB", "timestamp_ms": 1}
    algo = example_class()
    session = Session("nothing")
    result = algo.execute(1, "p001", session, {}, f"pvnone{uuid.uuid4().hex[:8]}", meta)
    assert check_execute_result(result, 1920, 1200) == []
    assert result["data"]["ng_reason"] == "board not found"


def test_no_image_and_wrong_pid_are_errors_with_codes(example_class, shm_id):
    meta = _publish(shm_id, _load("ok_01.png"))
    algo = example_class()
    session = Session("s")
    no_image = algo.pre_execute(1, "p001", session, {}, shm_id, {**meta, "width": 0})
    assert (no_image["status"], no_image["error_code"]) == ("ERROR", "1002")
    assert check_pre_execute_result(no_image) == []
    wrong_pid = algo.execute(1, "p999", session, {}, shm_id, meta)
    assert (wrong_pid["status"], wrong_pid["error_code"]) == ("ERROR", "1001")
    assert check_execute_result(wrong_pid, meta["width"], meta["height"]) == []
    other_pid = algo.execute(1, "p002", session, {}, shm_id, meta)
    assert other_pid["data"]["result_status"] == "OK"


def test_roi_restricts_the_search(example_class, shm_id):
    truth = GROUND_TRUTH["images"]["ok_01.png"]["board"]
    meta = _publish(shm_id, _load("ok_01.png"))
    algo = example_class()
    around = {
        "x": truth["x"] - 50,
        "y": truth["y"] - 50,
        "width": truth["width"] + 100,
        "height": truth["height"] + 100,
    }
    _, inside = _run_step(algo, 1, Session("a"), {"roi": around}, shm_id, meta)
    assert _near_board(inside["data"]["position_rects"][0], truth)
    left_of_board = f"0,0,{truth['x'] - 10},1200"
    _, outside = _run_step(algo, 1, Session("b"), {"roi": left_of_board}, shm_id, meta)
    assert outside["data"]["result_status"] == "NG"


def test_reset_forgets_the_board(example_class, shm_id):
    meta = _publish(shm_id, _load("ok_02.png"))
    algo = example_class()
    session = Session("again")
    _run_step(algo, 1, session, {}, shm_id, meta)
    assert session.exists("board")
    session._mark()
    algo.reset(session)
    assert session.exists("board") is False
    assert session._take_changes() == {"set": {}, "deleted": ["board"]}


def _pixel_digest(path: Path) -> tuple[str, np.ndarray]:
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    return hashlib.sha256(pixels.tobytes()).hexdigest(), pixels


@pytest.mark.slow
def test_generator_reproduces_the_committed_samples(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(IMAGES_DIR / "generate.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    fresh = json.loads((tmp_path / "ground_truth.json").read_text(encoding="utf-8"))
    assert fresh == GROUND_TRUTH
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".json") == SAMPLES
    for file in SAMPLES:
        committed_hash, committed = _pixel_digest(IMAGES_DIR / file)
        fresh_hash, regenerated = _pixel_digest(tmp_path / file)
        if file.endswith(".png"):
            assert fresh_hash == committed_hash, file
        else:
            # JPEG decoders may round differently across libjpeg builds; the content is the same.
            diff = np.abs(regenerated.astype(np.int16) - committed.astype(np.int16))
            assert float(diff.mean()) < 0.5 and int(diff.max()) <= 8, file
