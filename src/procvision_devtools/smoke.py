"""The quick validate's smoke run: setup, every step's hooks, pre_execute and execute, teardown,
in process on a generated image, each result checked as the station checks it."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from procvision_algorithm_sdk.base import BaseAlgorithm
from procvision_algorithm_sdk.contract import (
    DEFAULT_MAX_DEFECTS,
    Problem,
    check_execute_result,
    check_pre_execute_result,
    find_step,
    to_jsonable,
    validate_user_params,
)
from procvision_algorithm_sdk.errors import ALGORITHM_EXCEPTION, INVALID_RESULT, ProcVisionError
from procvision_algorithm_sdk.session import Session

from ._common import Report, make_test_image
from ._loader import describe_exception
from ._watch import phase

__all__ = ["call_failed", "sample_params", "smoke_in_process", "step_indexes"]


def sample_params(specs: Any, width: int, height: int) -> dict[str, Any]:
    """Return user_params a real station could send: defaults, or a valid value when required."""
    params: dict[str, Any] = {}
    if not isinstance(specs, list):
        return params
    for spec in specs:
        if not isinstance(spec, dict) or not isinstance(spec.get("key"), str):
            continue
        if spec.get("default") is not None or spec.get("required") is not True:
            continue
        kind = spec.get("type")
        value: Any
        if kind in ("int", "float"):
            low = spec.get("min", 0)
            value = low if isinstance(low, (int, float)) else 0
            value = int(value) if kind == "int" else float(value)
        elif kind == "enum":
            choices = spec.get("choices") or [""]
            value = choices[0]
        elif kind == "bool":
            value = False
        elif kind == "string":
            value = "a" * int(spec.get("min_length") or 1)
        elif kind == "rect":
            value = {"x": 0, "y": 0, "width": max(1, width // 2), "height": max(1, height // 2)}
        else:
            continue
        params[spec["key"]] = value
    return params


def step_indexes(info: dict[str, Any]) -> list[int]:
    """Return the step indexes of get_info() in order (step 1 when it lists none)."""
    steps = info.get("steps")
    indexes = sorted(
        step["index"]
        for step in (steps if isinstance(steps, list) else [])
        if isinstance(step, dict) and isinstance(step.get("index"), int)
    )
    return indexes or [1]


def call_failed(report: Report, name: str, exc: BaseException) -> None:
    code = exc.error_code if isinstance(exc, ProcVisionError) else ALGORITHM_EXCEPTION
    report.fail(name, f"raised {describe_exception(exc)}", code)


def smoke_in_process(
    algorithm: BaseAlgorithm, manifest: dict[str, Any], info: dict[str, Any], report: Report
) -> None:
    """Run setup, every step (hooks, pre_execute, execute) and teardown on a generated image."""
    from procvision_algorithm_sdk.shared_memory import (
        dev_clear_shared_memory,
        write_image_array_to_shared_memory,
    )

    pids = info.get("supported_pids") or manifest.get("supported_pids") or []
    pid = str(pids[0])
    image = make_test_image()
    shm_id = f"pv-validate-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    session = Session(
        f"validate-{uuid.uuid4().hex[:12]}",
        {"product_code": pid, "operator": "procvision-cli", "trace_id": uuid.uuid4().hex},
    )
    try:
        meta = write_image_array_to_shared_memory(shm_id, image)
        meta.update({"timestamp_ms": int(time.time() * 1000), "camera_id": "validate"})
        phase("setup")
        try:
            algorithm.setup()
        except BaseException as exc:
            call_failed(report, "setup", exc)
            return
        report.ok("setup", "setup() ran")
        for index in step_indexes(info):
            _smoke_step(algorithm, info, index, pid, session, shm_id, meta, report)
        phase("teardown")
        try:
            algorithm.teardown()
        except BaseException as exc:
            call_failed(report, "teardown", exc)
        else:
            report.ok("teardown", "teardown() ran")
    finally:
        dev_clear_shared_memory(shm_id)


def _smoke_step(
    algorithm: BaseAlgorithm,
    info: dict[str, Any],
    index: int,
    pid: str,
    session: Session,
    shm_id: str,
    meta: dict[str, Any],
    report: Report,
) -> None:
    width, height = int(meta["width"]), int(meta["height"])
    label = f"step {index}"
    step = find_step(info, index) or {}
    specs = step.get("params") or []
    params, param_problems = validate_user_params(
        specs, sample_params(specs, width, height), width, height
    )
    if param_problems:
        report.problems(f"{label} params", param_problems, "")
        return
    phase(f"{label} on_step_start")
    try:
        algorithm.on_step_start(index, session, session.context)
    except BaseException as exc:
        call_failed(report, f"{label} on_step_start", exc)
        return
    phase(f"{label} pre_execute", "pre_execute")
    try:
        raw_pre = algorithm.pre_execute(index, pid, session, dict(params), shm_id, dict(meta))
    except BaseException as exc:
        call_failed(report, f"{label} pre_execute", exc)
        return
    pre = _checked(
        report,
        f"{label} pre_execute",
        raw_pre,
        lambda r: check_pre_execute_result(r, width, height),
    )
    if pre is None:
        return
    final: dict[str, Any] = pre
    if pre.get("status") == "OK":
        phase(f"{label} execute", "execute")
        try:
            result = algorithm.execute(index, pid, session, dict(params), shm_id, dict(meta))
        except BaseException as exc:
            call_failed(report, f"{label} execute", exc)
            return
        checked = _checked(
            report,
            f"{label} execute",
            result,
            lambda r: check_execute_result(r, width, height, DEFAULT_MAX_DEFECTS),
        )
        if checked is None:
            return
        final = checked
    else:
        report.ok(f"{label} execute", "not called: pre_execute returned ERROR")
    phase(f"{label} on_step_finish")
    try:
        algorithm.on_step_finish(index, session, final)
    except BaseException as exc:
        call_failed(report, f"{label} on_step_finish", exc)


def _checked(
    report: Report, label: str, result: Any, check: Callable[[Any], list[Problem]]
) -> dict[str, Any] | None:
    """The result as the station sees it (numpy values converted, with a WARN), or None."""
    problems = check(result)
    if problems:
        try:
            converted = to_jsonable(result)
        except TypeError:
            converted = None
        if converted is not None and not check(converted):
            # the one rule (adapter, run, station alike): warn and convert
            report.warn(
                label,
                Problem(
                    "result",
                    INVALID_RESULT,
                    "numpy values converted to plain JSON numbers, as the station does "
                    "(return int/float/str to silence this)",
                ),
            )
            result, problems = converted, []
    if not report.problems(label, _result_problems(problems), _summary(result)):
        return None
    return dict(result)


def _result_problems(problems: list[Problem]) -> list[Problem]:
    """Name the rule in each problem's location ("result" when it is the whole value)."""
    return [Problem(p.where or "result", p.code or INVALID_RESULT, p.message) for p in problems]


def _summary(result: Any) -> str:
    """One line describing a valid result."""
    if not isinstance(result, dict):
        return "not a result"
    status = result.get("status")
    data: dict[str, Any] = result["data"] if isinstance(result.get("data"), dict) else {}
    if status == "ERROR":
        return f"ERROR {result.get('error_code') or ''} {result.get('message') or ''}".strip()
    parts = [f"status {status}"]
    if "result_status" in data:
        parts.append(f"verdict {data['result_status']}")
    for key in ("defect_rects", "position_rects", "calibration_rects"):
        if isinstance(data.get(key), list):
            parts.append(f"{len(data[key])} {key}")
    return ", ".join(parts)
