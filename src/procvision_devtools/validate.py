"""`procvision-cli validate`: check a project (quick, in-process; or --full, via the adapter)
and/or an offline package zip against the contract."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from procvision_algorithm_sdk.adapter.entry_hints import entry_hint
from procvision_algorithm_sdk.base import BaseAlgorithm
from procvision_algorithm_sdk.errors import (
    ALGORITHM_EXCEPTION,
    MANIFEST_MISSING,
    TIMEOUT,
    UNKNOWN_ERROR,
)
from procvision_algorithm_sdk.generation import EXECUTE_ONLY, api_of, neither_message

from ._common import (
    CliError,
    Report,
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
from ._project import check_against_info, check_assets, read_project
from ._watch import PhaseWatch, phase, run_watched
from .smoke import call_failed, sample_params, smoke_in_process, step_indexes

__all__ = ["require_pass", "sample_params", "step_indexes", "validate", "validate_quick"]


def validate(
    project: str | os.PathLike[str] | None = None,
    manifest: str | os.PathLike[str] | None = None,
    zip_path: str | os.PathLike[str] | None = None,
    *,
    full: bool = False,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Validate a project and/or a package zip; return the report (never raises on bad input).

    `timeout_s` bounds every algorithm call (default: the contract's phase deadlines); a call
    that overruns is a 1005 check.
    """
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
                from .execute_only import is_execute_only
                from .execute_only import validate_full as validate_full_execute_only
                from .full import validate_full

                if is_execute_only(root, manifest):
                    checked = read_project(root, manifest, report)
                    if checked is not None:
                        validate_full_execute_only(root, checked, report)
                else:
                    validate_full(root, manifest, report)
            else:
                validate_quick(root, manifest, report, timeout_s)
    except Exception as exc:  # a bug of ours must still give a report, not a traceback
        report.fail("validate", f"internal error: {describe_exception(exc)}", UNKNOWN_ERROR)
    return report.to_dict()


def require_pass(project: str | os.PathLike[str], timeout_s: float | None = None) -> int:
    """Quick-validate `project` (before packaging); CliError naming each FAIL, else the count."""
    report = validate(project, timeout_s=timeout_s)
    failed = [c for c in report["checks"] if c["result"] == "FAIL"]
    if not failed:
        return int(report["summary"]["passed"])
    lines = [
        f"{c['name']}" + (f" ({c['code']})" if c.get("code") else "") + f": {c['message']}"
        for c in failed
    ]
    raise CliError(
        str(failed[0].get("code") or UNKNOWN_ERROR),
        "validate failed, not packaging (--no-validate skips the check):\n  " + "\n  ".join(lines),
    )


def validate_quick(
    project: Path,
    manifest_path: str | os.PathLike[str] | None,
    report: Report,
    timeout_s: float | None = None,
) -> None:
    """In-process checks with a fresh import of the project's code, each call under a deadline."""
    manifest = read_project(project, manifest_path, report)
    if manifest is None:
        return
    entry = manifest["entry_point"]
    watch = PhaseWatch(timeout_s)
    # the calls fill their own report: a stuck call's thread must not write into ours later
    calls = Report()
    with fresh_import_context(project, project_top_level(entry)), stdout_to_stderr():
        overran = run_watched(lambda: _quick_in_context(project, manifest, entry, calls), watch)
    report.checks.extend(list(calls.checks))
    if overran is not None:
        report.fail(
            overran,
            f"{overran} did not return within {watch.limit_s:g} s (deadline; --timeout sets it)",
            TIMEOUT,
        )


def _quick_in_context(project: Path, manifest: dict[str, Any], entry: str, report: Report) -> None:
    phase("entry import")
    try:
        _module, cls = import_entry(entry)
    except (ImportError, AttributeError) as exc:
        code = MANIFEST_MISSING if _missing_entry(exc, entry) else ALGORITHM_EXCEPTION
        hint = entry_hint(entry, exc, project)
        report.fail(
            "entry import",
            f"cannot import {entry}: {describe_exception(exc)}{hint}",
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
    api = api_of(cls)
    if api is None:
        report.fail("algorithm API", neither_message(cls), MANIFEST_MISSING, "manifest.entry_point")
        return
    if api == EXECUTE_ONLY:
        from .execute_only import validate_quick as validate_execute_only

        validate_execute_only(cls, manifest, report)
        return
    phase("instantiate")
    try:
        algorithm = cls()
    except BaseException as exc:
        call_failed(report, "instantiate", exc)
        return
    report.ok("instantiate", f"{cls.__name__}() created")
    phase("get_info")
    try:
        info = algorithm.get_info()
    except BaseException as exc:
        call_failed(report, "get_info", exc)
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
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="deadline of every algorithm call in seconds (default: the contract's "
        "phase deadlines: pre_execute 10, execute 30, setup 60); past it: 1005",
    )
    parser.set_defaults(handler=_command)


def _command(args: argparse.Namespace) -> int:
    project = args.project
    if project is None and args.zip_path is None:
        project = "."
    report = validate(project, args.manifest, args.zip_path, full=args.full, timeout_s=args.timeout)
    if args.json:
        print_json(report)
    else:
        print_report(report)
    return 0 if report["summary"]["status"] == "PASS" else 1
