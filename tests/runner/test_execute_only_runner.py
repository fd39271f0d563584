"""Runner.run_step for an execute-only package: both frames through the worker's slot ring.

Real worker processes, real shared memory, the example package's real images and ground truth.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from procvision_algorithm_sdk.segment import SEGMENT_PREFIX
from procvision_runner import Runner, RunnerConfig, RunnerError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "execute-only-example"
IMAGES = EXAMPLE / "images"
TRUTH = json.loads((IMAGES / "ground_truth.json").read_text(encoding="utf-8"))
GUIDE_INFO = json.loads((IMAGES / TRUTH["guide_info"]).read_text(encoding="utf-8"))
NOOP = Path(__file__).resolve().parents[1] / "algos" / "runner" / "noop"


def load(name: str) -> np.ndarray:
    return np.asarray(Image.open(IMAGES / name).convert("RGB"))


def _our_segments() -> set[str]:
    prefix = f"{SEGMENT_PREFIX}{os.getpid()}_"
    return {n for n in os.listdir("/dev/shm") if n.startswith(prefix)}


@pytest.fixture(scope="module")
def runner() -> Iterator[Runner]:
    before = _our_segments()
    config = RunnerConfig(warmup_calls=0, workers_per_package=1, slots_per_worker=1)
    with Runner(config) as runner:
        key = runner.load(EXAMPLE)
        runner.route(["line-1", "line-2"], key)
        yield runner
    assert _our_segments() <= before  # every slot unlinked at close


def test_verdicts_match_the_ground_truth(runner: Runner) -> None:
    guide = load(TRUTH["guide_image"])
    for name, truth in sorted(TRUTH["samples"].items()):
        answer = runner.run_step(
            "line-1",
            TRUTH["step_index"],
            load(name),
            guide_frame=guide,
            step_desc=TRUTH["step_desc"],
            guide_info=GUIDE_INFO,
        )
        assert answer["pre_execute"] is None
        result = answer["execute"]
        assert result["status"] == "OK", result
        assert result["data"]["result_status"] == truth["result_status"], name
        assert sorted(r["label"] for r in result["data"]["defect_rects"]) == truth["missing"]
        assert len(result["data"]["position_rects"]) == 4
        assert result["data"]["debug"]["step_desc"] == TRUTH["step_desc"]
        assert result["package"] == {"name": "part-presence", "version": "1.0.0"}
        assert result["timings"]["transfer_ms"] >= 0
    # execute() is the same single call
    result = runner.execute(
        "line-2", 1, load("cur_ng_2.png"), guide_frame=guide, guide_info=GUIDE_INFO
    )
    assert result["data"]["result_status"] == "NG"


def test_package_info_is_synthesized(runner: Runner) -> None:
    (package,) = runner.packages()
    assert package["info"]["api"] == "execute-only"
    assert package["info"]["name"] == "part-presence"
    assert package["pids"] == ["line-1", "line-2"]
    # slots_per_worker=1 was raised to 2: both frames are in the ring at once
    assert len(runner.stats()["workers"]) == 1


def test_the_algorithms_own_error_code_and_debug(runner: Runner) -> None:
    guide = load(TRUTH["guide_image"])
    result = runner.execute("line-1", 2, load("cur_ok_01.png"), guide_frame=guide, step_desc="s")
    assert (result["status"], result["error_code"]) == ("ERROR", "1006"), result
    assert result["debug"] == {"step_index": 2, "step_desc": "s"}
    assert result["message"] == "guide_info lists no position to check"


@pytest.mark.parametrize(
    ("kwargs", "code", "text"),
    [
        ({}, "1006", "guide_frame"),
        ({"guide_frame": "x"}, "1002", "guide_frame"),
        ({"guide_info": {"label": "1"}}, "1006", "guide_info must be a list"),
        ({"guide_info": [{"label": "1"}]}, "1006", "guide_info[0].posList"),
        (
            {
                "guide_info": [
                    {"label": "1", "posList": [{"x": 600, "y": 0, "width": 80, "height": 5}]}
                ]
            },
            "1007",
            "guide_info[0].posList[0]",
        ),
        ({"step_desc": 3}, "1006", "step_desc"),
        ({"user_params": {"a": 1}}, "1006", "user_params"),
    ],
)
def test_bad_calls_are_refused_with_a_code(
    runner: Runner, kwargs: dict[str, Any], code: str, text: str
) -> None:
    args: dict[str, Any] = {"guide_frame": load(TRUTH["guide_image"]), "guide_info": GUIDE_INFO}
    if not kwargs:
        args.pop("guide_frame")
    args.update(kwargs)
    answer = runner.run_step("line-1", 1, load("cur_ok_01.png"), **args)
    result = answer["execute"]
    assert answer["pre_execute"] is None
    assert (result["status"], result["error_code"]) == ("ERROR", code), result
    assert text in result["message"]


def test_pre_execute_and_unsafe_pids(runner: Runner) -> None:
    result = runner.pre_execute("line-1", 1, load("cur_ok_01.png"))
    assert result["error_code"] == "1006" and "execute-only" in result["message"]
    key = runner.routes()["line-1"]
    with pytest.raises(RunnerError) as info:
        runner.route(["../x"], key)
    assert info.value.error_code == "1001"


def test_guide_arguments_to_a_lifecycle_package_are_1006() -> None:
    config = RunnerConfig(warmup_calls=0, workers_per_package=1)
    frame = np.full((24, 32, 3), 7, dtype=np.uint8)
    with Runner(config) as runner:
        runner.load(NOOP)
        pid = next(iter(runner.routes()))
        answer = runner.run_step(pid, 1, frame, guide_frame=frame, step_desc="x")
        result = answer["pre_execute"]
        assert (result["status"], result["error_code"]) == ("ERROR", "1006")
        assert "guide_frame, step_desc belong to the execute-only API" in result["message"]
        assert runner.run_step(pid, 1, frame)["execute"]["status"] == "OK"


def test_leased_frames_go_by_name(runner: Runner) -> None:
    """The direct-fill API: a client fills two leased segments; no copy into the ring."""
    from procvision_algorithm_sdk import segment as seg
    from procvision_runner.leases import LeaseRegistry

    registry = LeaseRegistry()
    try:
        leases = []
        for number, name in enumerate(("cur_ng_3.jpg", TRUTH["guide_image"]), start=1):
            image = load(name)
            lease = registry.create("cam-1", *image.shape, client_pid=os.getpid())
            shm = seg.attach_segment(lease["segment"])
            try:
                view = seg.payload_array(shm.buf, image.shape, np.uint8)
                np.copyto(view, image)
                del view
                seg.set_sequence(shm.buf, number)
            finally:
                seg.close_quietly(shm)
            leases.append((lease["lease_id"], number))
        (cur_id, cur_seq), (guide_id, guide_seq) = leases
        with (
            registry.checkout(cur_id, "cam-1", seq=cur_seq) as cur,
            registry.checkout(guide_id, "cam-1", seq=guide_seq) as guide,
        ):
            result = runner.execute("line-1", 1, cur, guide_frame=guide, guide_info=GUIDE_INFO)
        assert result["status"] == "OK", result
        assert result["data"]["result_status"] == "NG"
        labels = sorted(r["label"] for r in result["data"]["defect_rects"])
        assert labels == TRUTH["samples"]["cur_ng_3.jpg"]["missing"]
    finally:
        registry.close()
