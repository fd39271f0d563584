"""The rect fast path and the split of result checks between the adapter and the Runner."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from procvision_algorithm_sdk.contract import check_execute_result, check_rect
from procvision_algorithm_sdk.contract.rects import _check_rect_list, _well_formed
from procvision_runner.results import to_result

GOOD = [
    {"x": 0, "y": 0, "width": 1, "height": 1},
    {"x": 5, "y": 6, "width": 95, "height": 44, "label": "scratch", "score": 0.5},
    {"x": 5, "y": 6, "width": 7, "height": 8, "score": 1, "label": None},
]
BAD = [
    {"x": True, "y": 0, "width": 1, "height": 1},
    {"x": 1.0, "y": 0, "width": 1, "height": 1},
    {"x": np.int64(1), "y": 0, "width": 1, "height": 1},
    {"x": 0, "y": 0, "width": 0, "height": 1},
    {"x": -1, "y": 0, "width": 1, "height": 1},
    {"x": 99, "y": 0, "width": 2, "height": 1},
    {"x": 0, "y": 49, "width": 1, "height": 2},
    {"x": 0, "y": 0, "width": 1},
    {"x": 0, "y": 0, "width": 1, "height": 1, "score": math.nan},
    {"x": 0, "y": 0, "width": 1, "height": 1, "score": 1.5},
    {"x": 0, "y": 0, "width": 1, "height": 1, "score": True},
    {"x": 0, "y": 0, "width": 1, "height": 1, "label": 3},
    [0, 0, 1, 1],
    None,
]


@pytest.mark.parametrize("rect", GOOD)
def test_well_formed_rects_take_the_fast_path_and_pass(rect: dict) -> None:
    assert _well_formed(rect, 100, 50)
    assert check_rect(rect, "r", 100, 50) == []


@pytest.mark.parametrize("rect", BAD)
def test_anything_else_takes_the_full_check_with_the_same_problems(rect: object) -> None:
    assert not _well_formed(rect, 100, 50)
    full = check_rect(rect, "data.defect_rects[0]", 100, 50)
    assert full, rect
    assert _check_rect_list([rect], "data.defect_rects", 20, 100, 50) == full


def ng(rects: list) -> dict:
    return {
        "type": "result",
        "request_id": "r1",
        "status": "OK",
        "message": "",
        "error_code": None,
        "data": {"result_status": "NG", "ng_reason": "defects", "defect_rects": rects},
    }


def test_the_runner_rechecks_only_what_no_adapter_checked() -> None:
    outside = [{"x": 90, "y": 0, "width": 20, "height": 5}]
    unchecked = to_result(ng(outside), None, "execute", {}, time.perf_counter(), 20, 100, 50)
    assert unchecked["status"] == "ERROR" and unchecked["error_code"] == "1007", unchecked
    # from an adapter that said `contract:v1` the contract was checked where the algorithm ran
    checked = to_result(
        ng(outside), None, "execute", {}, time.perf_counter(), 20, 100, 50, checked=True
    )
    assert checked["status"] == "OK"
    # what only the Runner decides still applies: its own max_defects
    many = [{"x": i, "y": 0, "width": 1, "height": 1} for i in range(30)]
    cut = to_result(ng(many), None, "execute", {}, time.perf_counter(), 20, 100, 50, checked=True)
    assert len(cut["data"]["defect_rects"]) == 20 and cut["warnings"], cut


def test_an_ng_with_five_well_formed_rects_checks_clean() -> None:
    rects = [{"x": 10 * i, "y": 5, "width": 8, "height": 8, "score": 0.9} for i in range(5)]
    result = ng(rects)
    del result["type"], result["request_id"]
    assert check_execute_result(result, 100, 50) == []
