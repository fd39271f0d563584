"""`procvision-cli validate`: check a project (quick, in-process; or --full, via the adapter)
and/or an offline package zip against the contract."""

from __future__ import annotations

import argparse
import os
import time
import uuid
from pathlib import Path
from typing import Any

from procvision_algorithm_sdk.base import BaseAlgorithm
from procvision_algorithm_sdk.contract import (
    DEFAULT_MAX_DEFECTS,
    Problem,
    check_execute_result,
    check_info,
    check_manifest,
    check_pre_execute_result,
    find_step,
    legacy_step_zero,
    validate_user_params,
)
from procvision_algorithm_sdk.errors import (
    ALGORITHM_EXCEPTION,
    INVALID_RESULT,
    MANIFEST_MISSING,
    MODEL_NOT_FOUND,
    UNKNOWN_ERROR,
    ProcVisionError,
)
from procvision_algorithm_sdk.session import Session

from ._common import (
    CliError,
    Report,
    load_manifest,
    make_test_image,
    print_json,
    print_report,
)
from ._loader import (
    describe_exception,
    fresh_import_context,
    import_entry,
    project_top_level,
    stdout_to_stderr,
)


def validate(
    project: str | os.PathLike[str] | None = None,
    manifest: str | os.PathLike[str] | None = None,
    zip_path: str | os.PathLike[str] | None = None,
    *,
    full: bool = False,
) -> dict[str, Any]:
    """Validate a project and/or a package zip; return the report (never raises on bad input)."""
    report = Report()
    try:
        if zip_path is not None:
            from .zipvalidate import validate_zip

            validate_zip(Path(zip_path), report)
        if project is not None or zip_path is None:
            if project is not None:
                root = Path(project)
            else:
                root = Path(manifest).parent if manifest is not None else Path(".")
            if full:
                from .full import validate_full

                validate_full(root, manifest, report)
            else:
                validate_quick(root, manifest, report)
    except Exception as exc:  # a bug of ours must still give a report, not a traceback
        report.fail("validate", f"internal error: {describe_exception(exc)}", UNKNOWN_ERROR)
    return report.to_dict()


def read_project(
    project: Path, manifest_path: str | os.PathLike[str] | None, report: Report
) -> dict[str, Any] | None:
    """Load and check the manifest; return it when the entry point is usable, else None."""
    if not project.is_dir():
        report.fail("project", f"project directory not found: {project}", MANIFEST_MISSING)
        return None
    try:
        manifest = load_manifest(project, manifest_path)
    except CliError as exc:
        report.fail("manifest", exc.message, exc.code, "manifest")
        return None
    report.problems(
        "manifest", check_manifest(manifest), "manifest.json fields and types are valid"
    )
    for problem in legacy_step_zero(manifest, "manifest"):
        report.warn("step numbering", problem)
    if not isinstance(manifest, dict) or project_top_level(manifest.get("entry_point")) is None:
        report.fail(
            "entry import",
            "not attempted: manifest.entry_point is missing or malformed",
            MANIFEST_MISSING,
            "manifest.entry_point",
        )
        return None
    return manifest


def check_against_info(manifest: dict[str, Any], info: Any, report: Report) -> bool:
    """Record the get_info, step-schema and agreement checks; return whether info is usable."""
    info_problems = check_info(info)
    step_problems = [p for p in info_problems if p.where.startswith("info.steps")]
    other = [p for p in info_problems if p not in step_problems]
    report.problems("get_info", other, "get_info() returns name, version, supported_pids, steps")
    report.problems("step schemas", step_problems, "steps and parameter schemas are valid")
    alone = set(check_manifest(manifest))
    agreement = [p for p in check_manifest(manifest, info) if p not in alone]
    report.problems(
        "manifest/get_info agreement",
        agreement,
        "name, version and supported_pids agree with get_info()",
    )
    return isinstance(info, dict) and not other


def check_assets(project: Path, manifest: dict[str, Any], report: Report) -> None:
    """Every required asset file must exist inside the project."""
    assets = manifest.get("required_assets")
    if not isinstance(assets, dict) or not assets:
        report.ok("required assets", "no required_assets declared")
        return
    root = project.resolve()
    problems: list[Problem] = []
    count = 0
    for pid, kinds in assets.items():
        if not isinstance(kinds, dict):
            continue
        for kind, rel in kinds.items():
            if not isinstance(rel, str) or not rel:
                continue
            where = f"manifest.required_assets.{pid}.{kind}"
            target = (root / rel).resolve()
            if not target.is_relative_to(root):
                problems.append(Problem(where, MANIFEST_MISSING, f"{rel!r} is outside the project"))
            elif not target.is_file():
                problems.append(
                    Problem(where, MODEL_NOT_FOUND, f"asset {rel!r} (pid {pid}, {kind}) not found")
                )
            else:
                count += 1
    report.problems("required assets", problems, f"{count} asset file(s) present")


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


def _call_failed(report: Report, name: str, exc: BaseException) -> None:
    code = exc.error_code if isinstance(exc, ProcVisionError) else ALGORITHM_EXCEPTION
    report.fail(name, f"raised {describe_exception(exc)}", code)


def validate_quick(
    project: Path, manifest_path: str | os.PathLike[str] | None, report: Report
) -> None:
    """In-process checks with a fresh import of the project's code."""
    manifest = read_project(project, manifest_path, report)
    if manifest is None:
        return
    entry = manifest["entry_point"]
    with fresh_import_context(project, project_top_level(entry)), stdout_to_stderr():
        _quick_in_context(project, manifest, entry, report)


def _quick_in_context(project: Path, manifest: dict[str, Any], entry: str, report: Report) -> None:
    try:
        _module, cls = import_entry(entry)
    except (ImportError, AttributeError) as exc:
        code = MANIFEST_MISSING if _missing_entry(exc, entry) else ALGORITHM_EXCEPTION
        report.fail(
            "entry import",
            f"cannot import {entry}: {describe_exception(exc)}",
            code,
            "manifest.entry_point",
        )
        return
    except BaseException as exc:  # SystemExit or anything the module raises on import
        report.fail(
            "entry import",
            f"importing {entry} raised {describe_exception(exc)}",
            ALGORITHM_EXCEPTION,
            "manifest.entry_point",
        )
        return
    report.ok("entry import", f"imported {entry}")
    if not (isinstance(cls, type) and issubclass(cls, BaseAlgorithm)):
        report.fail(
            "BaseAlgorithm subclass",
            f"{entry} is not a subclass of procvision_algorithm_sdk.BaseAlgorithm",
            MANIFEST_MISSING,
            "manifest.entry_point",
        )
        return
    report.ok("BaseAlgorithm subclass", f"{cls.__name__} subclasses BaseAlgorithm")
    try:
        algorithm = cls()
    except BaseException as exc:
        _call_failed(report, "instantiate", exc)
        return
    report.ok("instantiate", f"{cls.__name__}() created")
    try:
        info = algorithm.get_info()
    except BaseException as exc:
        _call_failed(report, "get_info", exc)
        return
    if not check_against_info(manifest, info, report):
        return
    check_assets(project, manifest, report)
    smoke_in_process(algorithm, manifest, info, report)


def _missing_entry(exc: BaseException, entry: str) -> bool:
    """True when the entry point itself does not resolve (vs. the module failing inside)."""
    module_name = entry.split(":", 1)[0]
    if isinstance(exc, ModuleNotFoundError):
        missing = exc.name or ""
        return module_name == missing or module_name.startswith(missing + ".")
    return isinstance(exc, AttributeError)


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
        try:
            algorithm.setup()
        except BaseException as exc:
            _call_failed(report, "setup", exc)
            return
        report.ok("setup", "setup() ran")
        for index in step_indexes(info):
            _smoke_step(algorithm, info, index, pid, session, shm_id, meta, report)
        try:
            algorithm.teardown()
        except BaseException as exc:
            _call_failed(report, "teardown", exc)
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
    try:
        algorithm.on_step_start(index, session, session.context)
    except BaseException as exc:
        _call_failed(report, f"{label} on_step_start", exc)
        return
    try:
        pre = algorithm.pre_execute(index, pid, session, dict(params), shm_id, dict(meta))
    except BaseException as exc:
        _call_failed(report, f"{label} pre_execute", exc)
        return
    if not report.problems(
        f"{label} pre_execute",
        _result_problems(check_pre_execute_result(pre, width, height)),
        _summary(pre),
    ):
        return
    final: dict[str, Any] = pre
    if pre.get("status") == "OK":
        try:
            result = algorithm.execute(index, pid, session, dict(params), shm_id, dict(meta))
        except BaseException as exc:
            _call_failed(report, f"{label} execute", exc)
            return
        problems = check_execute_result(result, width, height, DEFAULT_MAX_DEFECTS)
        if not report.problems(f"{label} execute", _result_problems(problems), _summary(result)):
            return
        final = result
    else:
        report.ok(f"{label} execute", "not called: pre_execute returned ERROR")
    try:
        algorithm.on_step_finish(index, session, final)
    except BaseException as exc:
        _call_failed(report, f"{label} on_step_finish", exc)


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


def add_parser(subparsers: Any) -> None:
    """Register the validate command."""
    parser = subparsers.add_parser(
        "validate",
        help="check a project or an offline package against the contract",
        description="Check a project (quick in-process run, or --full through a real adapter "
        "process) and/or an offline package zip. Exit 0 on PASS, 1 on FAIL.",
    )
    parser.add_argument("project", nargs="?", help="project directory (default: current dir)")
    parser.add_argument(
        "--manifest", help="manifest.json to use instead of <project>/manifest.json"
    )
    parser.add_argument("--zip", dest="zip_path", help="an offline package zip to check")
    parser.add_argument("--full", action="store_true", help="run through a real adapter subprocess")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=_command)


def _command(args: argparse.Namespace) -> int:
    project = args.project
    if project is None and args.zip_path is None:
        project = "."
    report = validate(project, args.manifest, args.zip_path, full=args.full)
    if args.json:
        print_json(report)
    else:
        print_report(report)
    return 0 if report["summary"]["status"] == "PASS" else 1
