"""A call's input and its result: refused before any worker call with a code, converted, checked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from helpers.runner_kit import FAULTY, FRAME, Tracked, ok

from procvision_runner.calls import PackageKey


@pytest.fixture(scope="module")
def faulty(module_runner: Callable[..., Tracked]) -> tuple[Tracked, PackageKey]:
    """One Runner with the faulty package loaded, shared by the tests that change nothing in it.

    Refused input never reaches the worker and accepted input leaves no state there, so one
    worker serves them all (a worker start per test was most of this module's CPU).
    """
    tracked = module_runner()
    return tracked, tracked.runner.load(FAULTY)


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"user_params": {"mode": "nope"}}, "1006"),
        ({"user_params": {"threshold": 2.0}}, "1006"),
        ({"user_params": {"count": "3"}}, "1006"),
        ({"user_params": ["x"]}, "1006"),
        ({"frame": [[1, 2], [3, 4]]}, "1002"),
        ({"frame": np.zeros((4, 4, 3), dtype=np.float32)}, "1002"),
        ({"frame": np.zeros((4, 4, 4), dtype=np.uint8)}, "1002"),
        ({"frame": np.zeros((0, 4, 3), dtype=np.uint8)}, "1002"),
        ({"step": 9}, "1006"),
        ({"step": "1"}, "1006"),
        ({"color_space": "HSV"}, "1006"),
        ({"session_id": 5}, "1006"),
    ],
)
def test_bad_input_is_a_coded_result_before_any_worker_call(
    faulty: tuple[Tracked, PackageKey], kwargs: dict[str, Any], code: str
) -> None:
    tracked, _key = faulty
    runner = tracked.runner
    calls = tracked.calls()
    frame = kwargs.pop("frame", FRAME)
    step = kwargs.pop("step", 1)
    out = runner.run_step("f1", step, frame, **kwargs)
    assert out["execute"] is None
    assert out["pre_execute"]["status"] == "ERROR"
    assert out["pre_execute"]["error_code"] == code
    assert tracked.calls() == calls


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("field", ["user_params", "session_context"])
@pytest.mark.parametrize(
    "bad",
    [
        {"extra": _nested(5000)},
        {"extra": float("nan")},
        {"extra": b"bytes"},
        {"extra": {1, 2}},
        {1: "an int key"},
    ],
    ids=["deep", "nan", "bytes", "set", "int-key"],
)
def test_unjsonable_input_is_1006_not_an_exception(
    faulty: tuple[Tracked, PackageKey], field: str, bad: dict[Any, Any]
) -> None:
    tracked, _key = faulty
    runner = tracked.runner
    calls = tracked.calls()
    out = runner.run_step("f1", 1, FRAME, **{field: bad})
    assert out["execute"] is None
    result = out["pre_execute"]
    assert result["status"] == "ERROR" and result["error_code"] == "1006", result
    assert f"{field} is not plain JSON" in result["message"]
    assert tracked.calls() == calls  # refused before any worker call
    ok(runner.run_step("f1", 1, FRAME)["execute"])


def test_numpy_scalars_in_input_are_converted(faulty: tuple[Tracked, PackageKey]) -> None:
    runner = faulty[0].runner
    result = ok(
        runner.execute(
            "f1",
            1,
            FRAME,
            user_params={
                "extra": np.int64(3),
                "ratio": np.float32(0.25),
                "count": np.int16(7),
                "threshold": np.float64(0.75),
            },
            session_context={"line": np.int32(4)},
        )
    )
    echoed = result["data"]["user_params"]
    assert (echoed["extra"], echoed["ratio"], echoed["count"], echoed["threshold"]) == (
        3,
        0.25,
        7,
        0.75,
    )


def test_worker_call_with_unencodable_fields_is_a_1006_frame(
    faulty: tuple[Tracked, PackageKey],
) -> None:
    tracked, key = faulty
    runner = tracked.runner
    worker = runner._pools[key].workers()[0]
    for bad in ({1, 2}, float("inf"), _nested(5000)):
        frame = worker.call("info", {"extra": bad}, 5000)
        assert frame["status"] == "ERROR" and frame["error_code"] == "1006", frame
        assert "not plain JSON" in frame["message"]
    assert worker.state == "READY"
    assert worker.call("info", {}, 5000)["status"] == "OK"


def test_defaults_applied_and_gray_frames(faulty: tuple[Tracked, PackageKey]) -> None:
    runner = faulty[0].runner
    gray = np.full((10, 12), 42, dtype=np.uint8)
    data = ok(runner.execute("f1", 1, gray, user_params={"tag": "g"}))["data"]
    assert data["user_params"] == {"tag": "g", "mode": "ok", "count": 0, "threshold": 0.5}
    assert data["pixel"] == 42 and data["shape"] == [10, 12, 3]


def test_results_checked_and_defects_cut(make_runner: Any) -> None:
    tracked = make_runner(max_defects=5)
    runner = tracked.runner
    runner.load(FAULTY)
    cut = ok(runner.execute("f1", 1, FRAME, user_params={"mode": "defects", "count": 8}))
    assert len(cut["data"]["defect_rects"]) == 5
    assert cut["warnings"] and "cut from 8 to" in cut["warnings"][0]
    bad = runner.execute("f1", 1, FRAME, user_params={"mode": "bad"})
    assert bad["status"] == "ERROR" and bad["error_code"] == "1008"
    assert "result_status" in bad["message"]
    assert bad["original"]["data"]["result_status"] == "MAYBE"
