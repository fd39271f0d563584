"""The contract checks: each case breaks exactly one rule and expects one (code, where)."""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procvision_algorithm_sdk import errors
from procvision_algorithm_sdk.contract import (
    PARAM_TYPES,
    Problem,
    check_execute_result,
    check_info,
    check_manifest,
    check_param_specs,
    check_pre_execute_result,
    check_rect,
    find_step,
    find_unjsonable,
    is_safe_name,
    to_jsonable,
    validate_user_params,
)

W, H = 1920, 1200
R, C, P, M = (
    errors.INVALID_RESULT,
    errors.COORDINATE_INVALID,
    errors.INVALID_PARAMS,
    errors.MANIFEST_MISSING,
)


def rect(x: int = 10, y: int = 20, width: int = 30, height: int = 40, **extra: Any) -> dict:
    return {"x": x, "y": y, "width": width, "height": height, **extra}


def ng_result() -> dict:
    return {
        "status": "OK",
        "message": "",
        "data": {
            "result_status": "NG",
            "ng_reason": "screw missing",
            "defect_rects": [rect(label="screw", score=0.75)],
            "position_rects": [rect(0, 0, W, H)],
            "debug": {"latency_ms": 12.5, "n": 3},
        },
    }


def ok_result() -> dict:
    return {"status": "OK", "data": {"result_status": "OK", "position_rects": [rect()]}}


def error_result() -> dict:
    return {"status": "ERROR", "message": "model file not found", "error_code": "1003"}


def pre_result() -> dict:
    return {
        "status": "OK",
        "message": "board located",
        "data": {"calibration_rects": [rect(100, 100, 1600, 1000)]},
        "debug": {"board_score": 0.9},  # seed-era algorithms put debug at the top level
    }


def example_params() -> list[dict]:
    return [
        {"key": "roi", "type": "rect", "description": "region to search"},
        {
            "key": "exposure",
            "type": "float",
            "min": 8.0,
            "max": 16.0,
            "default": 12.5,
            "unit": "ms",
        },
        {"key": "count", "type": "int", "min": 1, "max": 10, "default": 4},
        {"key": "mode", "type": "enum", "choices": ["fast", "accurate"], "required": True},
        {"key": "enabled", "type": "bool", "default": True},
        {"key": "tag", "type": "string", "min_length": 2, "max_length": 8, "pattern": "^[a-z]+$"},
    ]


def info() -> dict:
    return {
        "name": "algorithm-example",
        "version": "1.0.0",
        "description": "board locator and screw check",
        "supported_pids": ["p001", "p002"],
        "steps": [
            {"index": 1, "name": "locate board", "params": example_params()},
            {"index": 2, "name": "check screws", "params": []},
        ],
    }


def manifest() -> dict:
    return {
        "name": "algorithm-example",
        "version": "1.0.0",
        "entry_point": "algorithm_example.main:ExampleAlgorithm",
        "supported_pids": ["p001", "p002"],
        "description": "example",
        "steps": info()["steps"],
        "required_assets": {"p001": {"model": "assets/p001/model.onnx"}},
        "default_config": {"threshold": 0.7},
    }


def broken(base: Callable[[], dict], change: Callable[[dict], object]) -> dict:
    """Return a fresh copy of a valid form with one change applied."""
    value = base()
    change(value)
    return value


def found(problems: list[Problem]) -> list[tuple[str, str]]:
    return [(p.code, p.where) for p in problems]


# ---------------------------------------------------------------------------------------------
# valid forms


@pytest.mark.parametrize(
    "result",
    [
        ng_result(),
        ok_result(),
        error_result(),
        {
            "status": "OK",
            "data": {"result_status": "NG", "ng_reason": "x" * 49, "defect_rects": []},
        },
        {"status": "ERROR", "message": "m" * 99, "error_code": 1009},
        {"status": "OK", "data": {"result_status": "OK", "defect_rects": [rect()] * 20}},
        {"status": "OK", "data": {"result_status": "OK"}, "extra": {"kept": [1, (2, 3)]}},
        {"status": "OK", "data": {"result_status": "OK", "debug": {"big": 2**80}}},
    ],
    ids=["ng", "ok", "error", "ng49", "error99", "20defects", "extra", "bigint"],
)
def test_valid_execute_results_pass(result: dict) -> None:
    assert check_execute_result(result, W, H) == []


@pytest.mark.parametrize(
    "result",
    [
        pre_result(),
        {"status": "OK"},
        {"status": "ERROR", "message": "no board found " * 20, "error_code": "1002"},
        {"status": "OK", "message": "ok", "data": {"calibration_rects": []}, "debug": None},
    ],
    ids=["full", "minimal", "long-error-message", "empty"],
)
def test_valid_pre_execute_results_pass(result: dict) -> None:
    assert check_pre_execute_result(result, W, H) == []


def test_valid_info_manifest_and_params_pass() -> None:
    assert check_info(info()) == []
    assert check_manifest(manifest()) == []
    assert check_manifest(manifest(), info()) == []
    assert check_param_specs(example_params(), "info.steps[0].params") == []
    assert check_rect(rect(score=1, label=""), "r", W, H) == []
    assert check_rect(rect(0, 0, W, H), "r", W, H) == []


def test_supported_pids_agreement_is_order_insensitive() -> None:
    reordered = broken(info, lambda i: i.update(supported_pids=["p002", "p001"]))
    assert check_manifest(manifest(), reordered) == []


# ---------------------------------------------------------------------------------------------
# execute results


def _set_data(**fields: object) -> Callable[[dict], None]:
    return lambda r: r["data"].update(fields)


def _del_data(key: str) -> Callable[[dict], None]:
    return lambda r: r["data"].pop(key)


def _set_rect(field: str, value: object, key: str = "defect_rects") -> Callable[[dict], None]:
    return lambda r: r["data"][key][0].update({field: value})


EXECUTE_CASES: list[tuple[str, Callable[[], dict], Callable[[dict], object], str, str]] = [
    ("top-level NG", ng_result, lambda r: r.update(status="NG"), R, "status"),
    ("lowercase ok", ok_result, lambda r: r.update(status="ok"), R, "status"),
    ("no status", ok_result, lambda r: r.pop("status"), R, "status"),
    ("error no message", error_result, lambda r: r.pop("message"), R, "message"),
    ("error blank message", error_result, lambda r: r.update(message="  "), R, "message"),
    ("error message 100", error_result, lambda r: r.update(message="m" * 100), R, "message"),
    ("message not str", ok_result, lambda r: r.update(message=5), R, "message"),
    ("error_code list", error_result, lambda r: r.update(error_code=["1003"]), R, "error_code"),
    ("error_code bool", error_result, lambda r: r.update(error_code=True), R, "error_code"),
    ("data not dict", error_result, lambda r: r.update(data=[1]), R, "data"),
    ("ok without data", ok_result, lambda r: r.pop("data"), R, "data"),
    ("no result_status", ok_result, _del_data("result_status"), R, "data.result_status"),
    ("bad result_status", ok_result, _set_data(result_status="FAIL"), R, "data.result_status"),
    ("NG without ng_reason", ng_result, _del_data("ng_reason"), R, "data.ng_reason"),
    ("ng_reason 50 chars", ng_result, _set_data(ng_reason="x" * 50), R, "data.ng_reason"),
    ("ng_reason empty", ng_result, _set_data(ng_reason=""), R, "data.ng_reason"),
    ("ng_reason not str", ng_result, _set_data(ng_reason=7), R, "data.ng_reason"),
    ("NG without defect_rects", ng_result, _del_data("defect_rects"), R, "data.defect_rects"),
    ("defect_rects not list", ng_result, _set_data(defect_rects=rect()), R, "data.defect_rects"),
    ("21 defects", ng_result, _set_data(defect_rects=[rect()] * 21), R, "data.defect_rects"),
    ("21 positions", ok_result, _set_data(position_rects=[rect()] * 21), R, "data.position_rects"),
    ("debug not dict", ng_result, _set_data(debug=[1, 2]), R, "data.debug"),
    ("rect past right edge", ng_result, _set_rect("x", W - 29), C, "data.defect_rects[0]"),
    ("rect past bottom edge", ng_result, _set_rect("y", H - 39), C, "data.defect_rects[0]"),
    ("rect x negative", ng_result, _set_rect("x", -1), C, "data.defect_rects[0]"),
    ("rect y negative", ng_result, _set_rect("y", -5), C, "data.defect_rects[0]"),
    ("width 0", ng_result, _set_rect("width", 0), C, "data.defect_rects[0].width"),
    ("height negative", ng_result, _set_rect("height", -3), C, "data.defect_rects[0].height"),
    ("x float", ng_result, _set_rect("x", 3.0), C, "data.defect_rects[0].x"),
    ("x bool", ng_result, _set_rect("x", True), C, "data.defect_rects[0].x"),
    ("x str", ng_result, _set_rect("x", "10"), C, "data.defect_rects[0].x"),
    (
        "rect no y",
        ng_result,
        lambda r: r["data"]["defect_rects"][0].pop("y"),
        C,
        "data.defect_rects[0].y",
    ),
    ("rect not dict", ng_result, _set_data(defect_rects=[[1, 2, 3, 4]]), C, "data.defect_rects[0]"),
    ("label not str", ng_result, _set_rect("label", 3), R, "data.defect_rects[0].label"),
    ("score above 1", ng_result, _set_rect("score", 1.5), R, "data.defect_rects[0].score"),
    ("score below 0", ng_result, _set_rect("score", -0.1), R, "data.defect_rects[0].score"),
    ("score str", ng_result, _set_rect("score", "high"), R, "data.defect_rects[0].score"),
    (
        "position outside",
        ok_result,
        _set_rect("width", W, "position_rects"),
        C,
        "data.position_rects[0]",
    ),
    ("numpy scalar", ng_result, _set_data(debug={"x": np.int64(3)}), R, "data.debug.x"),
    ("numpy float", ng_result, _set_data(debug={"s": [np.float32(0.5)]}), R, "data.debug.s[0]"),
    ("numpy bool", ng_result, _set_data(debug={"b": np.bool_(True)}), R, "data.debug.b"),
    ("numpy int in rect", ng_result, _set_rect("x", np.int32(5)), R, "data.defect_rects[0].x"),
    (
        "numpy score",
        ng_result,
        _set_rect("score", np.float64(0.5)),
        R,
        "data.defect_rects[0].score",
    ),
    ("ndarray", ng_result, _set_data(debug={"mask": np.zeros((2, 2))}), R, "data.debug.mask"),
    ("bytes", ng_result, _set_data(debug={"png": b"\x89PNG"}), R, "data.debug.png"),
    ("set", ng_result, _set_data(debug={"ids": {1, 2}}), R, "data.debug.ids"),
    ("NaN", ng_result, _set_data(debug={"v": math.nan}), R, "data.debug.v"),
    ("infinity", ng_result, _set_data(debug={"v": [1, math.inf]}), R, "data.debug.v[1]"),
    ("non-str key", ng_result, _set_data(debug={1: "a"}), R, "data.debug"),
    ("object", ng_result, _set_data(debug={"o": object()}), R, "data.debug.o"),
    ("odd key path", ng_result, _set_data(debug={"a b": b""}), R, 'data.debug["a b"]'),
]


@pytest.mark.parametrize(
    ("base", "change", "code", "where"),
    [case[1:] for case in EXECUTE_CASES],
    ids=[case[0] for case in EXECUTE_CASES],
)
def test_execute_rule(
    base: Callable[[], dict], change: Callable[[dict], object], code: str, where: str
) -> None:
    problems = check_execute_result(broken(base, change), W, H)
    assert found(problems) == [(code, where)], problems
    assert all(p.message for p in problems)


def test_top_level_ng_message_points_to_result_status() -> None:
    (problem,) = check_execute_result(broken(ng_result, lambda r: r.update(status="NG")), W, H)
    assert "data.result_status" in problem.message


def test_numpy_scalar_message_says_how_to_fix() -> None:
    (problem,) = check_execute_result(broken(ng_result, _set_data(debug={"x": np.int64(3)})))
    assert problem.message == "numpy.int64 at data.debug.x: convert with int()"


def test_max_defects_is_configurable() -> None:
    result = broken(ng_result, _set_data(defect_rects=[rect()] * 6))
    assert found(check_execute_result(result, W, H, max_defects=5)) == [(R, "data.defect_rects")]
    assert check_execute_result(result, W, H, max_defects=6) == []


def test_bounds_need_the_image_size() -> None:
    far = broken(ng_result, _set_rect("x", 5000))
    assert check_execute_result(far) == []
    assert found(check_execute_result(far, W, H)) == [(C, "data.defect_rects[0]")]


def test_every_problem_is_reported_not_just_the_first() -> None:
    result = {
        "status": "OK",
        "data": {
            "result_status": "NG",
            "defect_rects": [rect(width=0), rect(x=-1), "x"],
            "debug": {"a": np.int64(1)},
        },
    }
    assert found(check_execute_result(result, W, H)) == [
        (R, "data.ng_reason"),
        (C, "data.defect_rects[0].width"),
        (C, "data.defect_rects[1]"),
        (C, "data.defect_rects[2]"),
        (R, "data.debug.a"),
    ]


@pytest.mark.parametrize("result", [None, [], "OK", 3, np.zeros(3)], ids=repr)
def test_result_that_is_not_a_dict(result: object) -> None:
    assert found(check_execute_result(result)) == [(R, "result")]
    assert found(check_pre_execute_result(result)) == [(R, "result")]


# ---------------------------------------------------------------------------------------------
# pre_execute results


PRE_CASES: list[tuple[str, Callable[[dict], object], str, str]] = [
    ("result_status", _set_data(result_status="OK"), R, "data.result_status"),
    ("defect_rects", _set_data(defect_rects=[]), R, "data.defect_rects"),
    ("ng_reason", _set_data(ng_reason="x"), R, "data.ng_reason"),
    ("top-level NG", lambda r: r.update(status="NG"), R, "status"),
    ("error no message", lambda r: r.update(status="ERROR", message=""), R, "message"),
    ("error_code dict", lambda r: r.update(error_code={}), R, "error_code"),
    ("data not dict", lambda r: r.update(data="x"), R, "data"),
    ("debug not dict", lambda r: r.update(debug="x"), R, "debug"),
    ("calibration not list", _set_data(calibration_rects=rect()), R, "data.calibration_rects"),
    (
        "calibration width 0",
        _set_rect("width", 0, "calibration_rects"),
        C,
        "data.calibration_rects[0].width",
    ),
    ("calibration outside", _set_rect("x", W, "calibration_rects"), C, "data.calibration_rects[0]"),
    ("numpy in debug", lambda r: r["debug"].update(s=np.float64(1)), R, "debug.s"),
]


@pytest.mark.parametrize(
    ("change", "code", "where"), [c[1:] for c in PRE_CASES], ids=[c[0] for c in PRE_CASES]
)
def test_pre_execute_rule(change: Callable[[dict], object], code: str, where: str) -> None:
    problems = check_pre_execute_result(broken(pre_result, change), W, H)
    assert found(problems) == [(code, where)], problems


# ---------------------------------------------------------------------------------------------
# rects on their own


@pytest.mark.parametrize(
    ("value", "code", "where"),
    [
        (None, C, "roi"),
        (rect(width=0), C, "roi.width"),
        (rect(height=2.5), C, "roi.height"),
        (rect(x=W), C, "roi"),
        ({"x": 1, "y": 1, "width": 1}, C, "roi.height"),
        (rect(label=5), R, "roi.label"),
        (rect(score=math.nan), R, "roi.score"),
        (rect(score=True), R, "roi.score"),
    ],
    ids=["none", "width0", "float", "outside", "missing", "label", "nan-score", "bool-score"],
)
def test_check_rect(value: object, code: str, where: str) -> None:
    assert found(check_rect(value, "roi", W, H)) == [(code, where)]


# ---------------------------------------------------------------------------------------------
# get_info


def _step(**fields: object) -> Callable[[dict], None]:
    return lambda i: i["steps"][0].update(fields)


INFO_CASES: list[tuple[str, Callable[[dict], object], str, str]] = [
    ("no name", lambda i: i.pop("name"), R, "info.name"),
    ("empty version", lambda i: i.update(version=""), R, "info.version"),
    ("description int", lambda i: i.update(description=1), R, "info.description"),
    ("no pids", lambda i: i.pop("supported_pids"), R, "info.supported_pids"),
    ("empty pids", lambda i: i.update(supported_pids=[]), R, "info.supported_pids"),
    ("pids str", lambda i: i.update(supported_pids="p001"), R, "info.supported_pids"),
    ("duplicate pid", lambda i: i.update(supported_pids=["a", "a"]), R, "info.supported_pids[1]"),
    ("empty pid", lambda i: i.update(supported_pids=[""]), R, "info.supported_pids[0]"),
    ("no steps", lambda i: i.pop("steps"), R, "info.steps"),
    ("step not dict", lambda i: i["steps"].append(3), R, "info.steps[2]"),
    ("index -1", _step(index=-1), R, "info.steps[0].index"),
    ("index bool", _step(index=True), R, "info.steps[0].index"),
    ("duplicate index", _step(index=2), R, "info.steps[1].index"),
    ("no step name", lambda i: i["steps"][0].pop("name"), R, "info.steps[0].name"),
    ("params not list", _step(params={}), P, "info.steps[0].params"),
    (
        "bad spec",
        lambda i: i["steps"][1].update(params=[{"key": "k", "type": "x"}]),
        P,
        "info.steps[1].params[0].type",
    ),
    (
        "numpy pid list",
        lambda i: i.update(description=np.str_("x"), extra=np.int8(1)),
        R,
        "info.extra",
    ),
]


@pytest.mark.parametrize(
    ("change", "code", "where"), [c[1:] for c in INFO_CASES], ids=[c[0] for c in INFO_CASES]
)
def test_info_rule(change: Callable[[dict], object], code: str, where: str) -> None:
    assert found(check_info(broken(info, change))) == [(code, where)]


# ---------------------------------------------------------------------------------------------
# parameter specs


def _spec(index: int, **fields: object) -> Callable[[list], None]:
    return lambda specs: specs[index].update(fields)


SPEC_CASES: list[tuple[str, Callable[[list], object], str]] = [
    ("spec not dict", lambda s: s.append("roi"), "[6]"),
    ("unknown type", _spec(0, type="integer"), "[0].type"),
    ("missing type", lambda s: s[0].pop("type"), "[0].type"),
    ("missing key", lambda s: s[0].pop("key"), "[0].key"),
    ("duplicate key", _spec(1, key="roi"), "[1].key"),
    ("description int", _spec(0, description=3), "[0].description"),
    ("required not bool", _spec(3, required="yes"), "[3].required"),
    ("float min not number", _spec(1, min="8"), "[1].min"),
    ("int max float", _spec(2, max=10.5), "[2].max"),
    ("min above max", _spec(2, min=5, max=3), "[2]"),
    ("float default out of range", _spec(1, default=20.0), "[1].default"),
    ("int default float", _spec(2, default=2.5), "[2].default"),
    ("int default bool", _spec(2, default=True), "[2].default"),
    ("float default NaN", _spec(1, default=math.nan), "[1].default"),
    ("empty choices", _spec(3, choices=[]), "[3].choices"),
    ("choices not list", _spec(3, choices="fast"), "[3].choices"),
    ("duplicate choice", _spec(3, choices=["a", "a"]), "[3].choices[1]"),
    ("enum default outside", _spec(3, default="slow"), "[3].default"),
    ("bool default str", _spec(4, default="yes"), "[4].default"),
    ("bad pattern", _spec(5, pattern="("), "[5].pattern"),
    ("negative max_length", _spec(5, max_length=-1), "[5].max_length"),
    ("min_length above max_length", _spec(5, min_length=9), "[5]"),
    ("string default too long", _spec(5, default="abcdefghij"), "[5].default"),
    ("string default pattern", _spec(5, default="AB"), "[5].default"),
    ("rect default malformed", _spec(0, default="1,2,3"), "[0].default"),
    (
        "rect default width 0",
        _spec(0, default={"x": 0, "y": 0, "width": 0, "height": 1}),
        "[0].default.width",
    ),
]


@pytest.mark.parametrize(
    ("change", "suffix"), [c[1:] for c in SPEC_CASES], ids=[c[0] for c in SPEC_CASES]
)
@pytest.mark.parametrize(
    ("where", "code"), [("info.steps[0].params", P), ("manifest.steps[0].params", M)]
)
def test_param_spec_rule(
    change: Callable[[list], object], suffix: str, where: str, code: str
) -> None:
    specs = example_params()
    change(specs)
    assert found(check_param_specs(specs, where)) == [(code, where + suffix)]


@pytest.mark.parametrize("params", [None, {}, "roi"])
def test_param_specs_not_a_list(params: object) -> None:
    assert found(check_param_specs(params, "info.steps[0].params")) == [(P, "info.steps[0].params")]


# ---------------------------------------------------------------------------------------------
# user_params


def test_user_params_defaults_normalisation_and_unknown_keys() -> None:
    params, problems = validate_user_params(
        example_params(), {"roi": " 1, 2 ,30,40", "mode": "fast", "exposure": 9, "extra": [1]}, W, H
    )
    assert problems == []
    assert params == {
        "roi": {"x": 1, "y": 2, "width": 30, "height": 40},
        "mode": "fast",
        "exposure": 9,
        "count": 4,
        "enabled": True,
        "extra": [1],
    }


def test_user_params_none_means_empty_and_null_means_unset() -> None:
    specs = [s for s in example_params() if s["key"] != "mode"]
    assert validate_user_params(specs, None) == (
        {"exposure": 12.5, "count": 4, "enabled": True},
        [],
    )
    params, problems = validate_user_params(specs, {"exposure": None})
    assert problems == [] and params["exposure"] == 12.5


def test_user_params_do_not_change_the_input() -> None:
    given = {"roi": "1,2,3,4", "mode": "fast"}
    before = copy.deepcopy(given)
    validate_user_params(example_params(), given)
    assert given == before


USER_CASES: list[tuple[str, dict, str, str]] = [
    ("float above max", {"exposure": 16.5}, P, "user_params.exposure"),
    ("float below min", {"exposure": 7}, P, "user_params.exposure"),
    ("float bool", {"exposure": True}, P, "user_params.exposure"),
    ("float NaN", {"exposure": math.nan}, P, "user_params.exposure"),
    ("float inf", {"exposure": math.inf}, P, "user_params.exposure"),
    ("float str", {"exposure": "12"}, P, "user_params.exposure"),
    ("int float", {"count": 2.0}, P, "user_params.count"),
    ("int bool", {"count": False}, P, "user_params.count"),
    ("int out of range", {"count": 11}, P, "user_params.count"),
    ("enum outside", {"mode": "slow"}, P, "user_params.mode"),
    ("enum wrong type", {"mode": 1}, P, "user_params.mode"),
    ("bool int", {"enabled": 1}, P, "user_params.enabled"),
    ("string not str", {"tag": 12}, P, "user_params.tag"),
    ("string too short", {"tag": "a"}, P, "user_params.tag"),
    ("string too long", {"tag": "abcdefghi"}, P, "user_params.tag"),
    ("string pattern", {"tag": "ab1"}, P, "user_params.tag"),
    ("rect string 3 parts", {"roi": "1,2,3"}, P, "user_params.roi"),
    ("rect string float", {"roi": "1,2,3.5,4"}, P, "user_params.roi"),
    ("rect list", {"roi": [1, 2, 3, 4]}, P, "user_params.roi"),
    ("rect width 0", {"roi": "1,2,0,4"}, P, "user_params.roi.width"),
    ("rect dict missing", {"roi": {"x": 1, "y": 2, "width": 3}}, P, "user_params.roi.height"),
    ("rect outside", {"roi": "1900,0,100,10"}, C, "user_params.roi"),
    ("rect negative", {"roi": {"x": -1, "y": 0, "width": 5, "height": 5}}, C, "user_params.roi"),
]


@pytest.mark.parametrize(
    ("given", "code", "where"), [c[1:] for c in USER_CASES], ids=[c[0] for c in USER_CASES]
)
def test_user_params_rule(given: dict, code: str, where: str) -> None:
    _params, problems = validate_user_params(example_params(), {"mode": "fast", **given}, W, H)
    assert found(problems) == [(code, where)], problems


def test_missing_required_param() -> None:
    _params, problems = validate_user_params(example_params(), {}, W, H)
    assert found(problems) == [(P, "user_params.mode")]


@pytest.mark.parametrize("given", [[], "a=1", 3])
def test_user_params_not_a_dict(given: object) -> None:
    params, problems = validate_user_params(example_params()[:3], given)
    assert found(problems) == [(P, "user_params")]
    assert params == {"exposure": 12.5, "count": 4}


def test_param_schema_not_a_list() -> None:
    params, problems = validate_user_params({"key": "x"}, {"a": 1})
    assert found(problems) == [(P, "params")] and params == {"a": 1}


# ---------------------------------------------------------------------------------------------
# manifest


def _del(key: str) -> Callable[[dict], None]:
    return lambda m: m.pop(key)


def _set(**fields: object) -> Callable[[dict], None]:
    return lambda m: m.update(fields)


MANIFEST_CASES: list[tuple[str, Callable[[dict], object], str]] = [
    ("no entry_point", _del("entry_point"), "manifest.entry_point"),
    ("no name", _del("name"), "manifest.name"),
    ("no version", _del("version"), "manifest.version"),
    ("no supported_pids", _del("supported_pids"), "manifest.supported_pids"),
    ("name not str", _set(name=1), "manifest.name"),
    ("unsafe name ../x", _set(name="../x"), "manifest.name"),
    ("unsafe name slash", _set(name="a/b"), "manifest.name"),
    ("name 65 chars", _set(name="a" * 65), "manifest.name"),
    ("unsafe version", _set(version="1.0/../../etc"), "manifest.version"),
    ("version leading dot", _set(version=".1"), "manifest.version"),
    ("pids str", _set(supported_pids="p001"), "manifest.supported_pids"),
    ("pids empty", _set(supported_pids=[]), "manifest.supported_pids"),
    ("pid int", _set(supported_pids=[1, "p002"]), "manifest.supported_pids[0]"),
    ("pid unsafe", _set(supported_pids=["p001", "../p"]), "manifest.supported_pids[1]"),
    ("description int", _set(description=2), "manifest.description"),
    ("default_config list", _set(default_config=[1]), "manifest.default_config"),
    ("steps not list", _set(steps={}), "manifest.steps"),
    ("step index -1", lambda m: m["steps"][0].update(index=-1), "manifest.steps[0].index"),
    (
        "step param",
        lambda m: m["steps"][1].update(params=[{"key": "k"}]),
        "manifest.steps[1].params[0].type",
    ),
    ("assets not dict", _set(required_assets=["a"]), "manifest.required_assets"),
    (
        "asset pid unknown",
        _set(required_assets={"p999": {"m": "a"}}),
        "manifest.required_assets.p999",
    ),
    ("asset kinds not dict", _set(required_assets={"p001": "a"}), "manifest.required_assets.p001"),
    (
        "asset with ..",
        _set(required_assets={"p001": {"model": "assets/../../x"}}),
        "manifest.required_assets.p001.model",
    ),
    (
        "asset with ..\\",
        _set(required_assets={"p001": {"model": "..\\x"}}),
        "manifest.required_assets.p001.model",
    ),
    (
        "asset absolute",
        _set(required_assets={"p001": {"model": "/etc/passwd"}}),
        "manifest.required_assets.p001.model",
    ),
    (
        "asset UNC",
        _set(required_assets={"p001": {"model": "\\\\host\\share"}}),
        "manifest.required_assets.p001.model",
    ),
    (
        "asset drive",
        _set(required_assets={"p001": {"model": "C:model.onnx"}}),
        "manifest.required_assets.p001.model",
    ),
    (
        "asset empty",
        _set(required_assets={"p001": {"model": ""}}),
        "manifest.required_assets.p001.model",
    ),
    ("not json", _set(default_config={"x": np.float32(1)}), "manifest.default_config.x"),
]


@pytest.mark.parametrize(
    ("change", "where"), [c[1:] for c in MANIFEST_CASES], ids=[c[0] for c in MANIFEST_CASES]
)
def test_manifest_rule(change: Callable[[dict], object], where: str) -> None:
    assert found(check_manifest(broken(manifest, change))) == [(M, where)]


@pytest.mark.parametrize(
    "entry_point",
    [
        "algorithm_example.main.ExampleAlgorithm",
        "algorithm_example:",
        ":ExampleAlgorithm",
        "a:b:C",
        "my-pkg.main:Algo",
        "pkg..main:Algo",
        "pkg.main:Algo()",
        "class.main:Algo",
        "../evil:Algo",
        "pkg.main: Algo",
        "",
        42,
        None,
    ],
)
def test_bad_entry_point_syntax(entry_point: object) -> None:
    result = check_manifest(broken(manifest, _set(entry_point=entry_point)))
    assert found(result) == [(M, "manifest.entry_point")]


@pytest.mark.parametrize("manifest_value", [None, [], "{}", 1])
def test_manifest_not_an_object(manifest_value: object) -> None:
    assert found(check_manifest(manifest_value)) == [(M, "manifest")]


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda i: i.update(supported_pids=["p001", "p003"]), "manifest.supported_pids"),
        (lambda i: i.update(name="other"), "manifest.name"),
        (lambda i: i.update(version="1.0.1"), "manifest.version"),
    ],
    ids=["pids", "name", "version"],
)
def test_manifest_disagrees_with_get_info(change: Callable[[dict], object], where: str) -> None:
    assert found(check_manifest(manifest(), broken(info, change))) == [(M, where)]


def test_pid_disagreement_names_both_sides() -> None:
    other = broken(info, lambda i: i.update(supported_pids=["p001", "p003"]))
    (problem,) = check_manifest(manifest(), other)
    assert "only in the manifest: p002" in problem.message
    assert "only in get_info(): p003" in problem.message


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("algorithm-example", True),
        ("1.0.0", True),
        ("A_b.c-9", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("", False),
        ("../x", False),
        ("..", False),
        (".hidden", False),
        ("-rf", False),
        ("a/b", False),
        ("a\\b", False),
        ("a b", False),
        ("caf\u00e9", False),
        ("a\n", False),
        (None, False),
        (5, False),
    ],
)
def test_is_safe_name(name: object, safe: bool) -> None:
    assert is_safe_name(name) is safe


# ---------------------------------------------------------------------------------------------
# find_step, to_jsonable, find_unjsonable, Problem


def test_find_step() -> None:
    assert find_step(info(), 2) == {"index": 2, "name": "check screws", "params": []}
    assert find_step(manifest(), 1)["name"] == "locate board"  # type: ignore[index]
    assert find_step(info(), 3) is None
    assert find_step(info(), True) is None  # type: ignore[arg-type]
    assert find_step({"steps": "x"}, 1) is None
    assert find_step(None, 1) is None


def test_to_jsonable_converts_numpy_scalars_and_tuples() -> None:
    value = {"a": (np.int64(1), np.float32(0.5), np.bool_(False)), "b": [{"c": np.uint8(7)}]}
    out = to_jsonable(value)
    assert out == {"a": [1, 0.5, False], "b": [{"c": 7}]}
    assert type(out["a"][0]) is int and type(out["a"][1]) is float  # type: ignore[index]
    assert type(out["a"][2]) is bool  # type: ignore[index]
    json.dumps(out, allow_nan=False)


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"a": [1, np.zeros(3)]}, "a[1]"),
        ({"img": b"abc"}, "img"),
        ({"s": {1}}, "s"),
        ({"o": object()}, "o"),
        ({"k": {2: "x"}}, "k"),
        ({"f": math.nan}, "f"),
        ({"f": np.float64("inf")}, "f"),
    ],
    ids=["ndarray", "bytes", "set", "object", "int key", "nan", "numpy inf"],
)
def test_to_jsonable_names_the_bad_path(value: object, path: str) -> None:
    with pytest.raises(TypeError, match=re.escape(f"at {path} ")):
        to_jsonable(value)


def test_cycles_are_problems_not_recursion() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    assert found(find_unjsonable({"d": loop}, "data")) == [(R, "data.d[1]")]
    with pytest.raises(TypeError, match="cycle"):
        to_jsonable(loop)
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    missing_data, too_deep = check_execute_result({"status": "OK", "x": deep})
    assert (missing_data.code, missing_data.where) == (R, "data")
    assert too_deep.code == R and too_deep.where == "x" + "[0]" * 99
    assert "nested deeper than 100 levels" in too_deep.message


def test_shared_substructure_is_fine() -> None:
    shared = {"a": 1}
    assert find_unjsonable({"x": shared, "y": [shared, shared]}, "") == []


def test_huge_int_is_reported() -> None:
    assert found(find_unjsonable({"n": 10**5000}, "debug")) == [(R, "debug.n")]


def test_problem_to_dict() -> None:
    problem = Problem("data.ng_reason", R, "too long")
    assert problem.to_dict() == {"where": "data.ng_reason", "code": R, "message": "too long"}
    assert json.loads(json.dumps(problem.to_dict())) == problem.to_dict()


# ---------------------------------------------------------------------------------------------
# garbage never raises


CONTRACT_KEYS = [
    "status", "message", "error_code", "data", "debug", "result_status", "ng_reason",
    "defect_rects", "position_rects", "calibration_rects", "x", "y", "width", "height", "label",
    "score", "name", "version", "description", "supported_pids", "steps", "index", "params",
    "key", "type", "default", "required", "min", "max", "unit", "choices", "min_length",
    "max_length", "pattern", "entry_point", "required_assets", "default_config", "roi",
]  # fmt: skip

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, -1, 1, 20, 2**64, W, H]),
    st.builds(pow, st.just(10), st.integers(4000, 5000)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["OK", "NG", "ERROR", "1,2,3,4", "a:b", "../x", "(", *PARAM_TYPES]),
    st.binary(max_size=4),
    st.builds(np.int64, st.integers(-(2**63), 2**63 - 1)),
    st.builds(np.float32, st.floats(width=32)),
    st.builds(np.bool_, st.booleans()),
    st.builds(np.zeros, st.integers(0, 3)),
    st.frozensets(st.integers(), max_size=2),
    st.just(object()),
)
keys = st.one_of(st.sampled_from(CONTRACT_KEYS), st.text(max_size=5))
garbage = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.tuples(inner, inner),
        st.dictionaries(keys, inner, max_size=8),
        st.dictionaries(st.one_of(keys, st.integers(), st.none()), inner, max_size=3),
    ),
    max_leaves=40,
)

CHECKS: dict[str, Callable[[object, object, object, object], object]] = {
    "pre": lambda v, w, h, _m: check_pre_execute_result(v, w, h),
    "execute": lambda v, w, h, m: check_execute_result(v, w, h, m),
    "rect": lambda v, w, h, m: check_rect(v, m, w, h),
    "info": lambda v, _w, _h, _m: check_info(v),
    "manifest": lambda v, w, _h, _m: check_manifest(v, w),
    "specs": lambda v, _w, _h, m: check_param_specs(v, m),
    "unjsonable": lambda v, _w, _h, m: find_unjsonable(v, m),
    "user_params": lambda v, w, h, m: validate_user_params(m, v, w, h),
}


def _assert_problems(problems: object) -> None:
    assert isinstance(problems, list)
    for problem in problems:
        assert isinstance(problem, Problem)
        assert problem.code in errors.ERROR_CODES
        assert isinstance(problem.where, str) and problem.where
        assert isinstance(problem.message, str) and problem.message
        # the last-resort guard must never be what handled ordinary garbage
        assert "could not be checked" not in problem.message


@pytest.mark.parametrize("check", sorted(CHECKS))
@settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@pytest.mark.slow
@given(value=garbage, width=garbage, height=garbage, extra=garbage)
def test_checks_never_raise_on_garbage(
    check: str, value: object, width: object, height: object, extra: object
) -> None:
    out = CHECKS[check](value, width, height, extra)
    if check == "user_params":
        assert isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], dict)
        out = out[1]
    _assert_problems(out)
    step = find_step(value, extra)  # type: ignore[arg-type]
    assert step is None or isinstance(step, dict)


@settings(
    max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@pytest.mark.slow
@given(value=garbage)
def test_to_jsonable_agrees_with_find_unjsonable(value: object) -> None:
    problems = find_unjsonable(value, "v")
    _assert_problems(problems)
    numpy_only = all(
        re.fullmatch(r"numpy\.\w+ at .*: convert with \S+", p.message, re.DOTALL) for p in problems
    )
    try:
        out = to_jsonable(value)
    except TypeError:
        assert problems and not numpy_only
    else:
        assert numpy_only
        json.dumps(out, allow_nan=False)


plain_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=5), inner, max_size=6),
    ),
    max_leaves=40,
)


@settings(
    max_examples=160, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@pytest.mark.slow
@given(value=st.one_of(garbage, plain_json))
def test_fast_path_only_passes_what_the_full_walk_passes(value: object) -> None:
    from procvision_algorithm_sdk.contract import _plainly_json, _walk_json

    walked: list[Problem] = []
    _walk_json(value, "", walked, set(), set(), 0)
    if _plainly_json(value):
        assert walked == []
        json.dumps(value, allow_nan=False)
    assert find_unjsonable(value, "") == walked


def test_fast_path_leaves_cycles_depth_and_big_structures_to_the_walk() -> None:
    from procvision_algorithm_sdk.contract import MAX_NESTING_DEPTH, _plainly_json

    loop: list[Any] = [1]
    loop.append(loop)
    deep: Any = "leaf"
    for _ in range(MAX_NESTING_DEPTH + 1):
        deep = [deep]
    wide = {"data": {"values": list(range(5000))}}
    for value in (loop, deep, wide, {"n": 10**400}, {"f": np.float64(1.0)}, {1: "x"}):
        assert not _plainly_json(value)
    assert find_unjsonable(wide, "") == []  # too big for the fast path, still valid
    assert [p.where for p in find_unjsonable(loop, "")] == ["[1]"]
    assert _plainly_json({"status": "OK", "data": {"result_status": "OK", "rects": [(1, 2.5)]}})
