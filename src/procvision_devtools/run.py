"""`procvision-cli run`: one step (or every step) of a project on a real image, via the adapter."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from procvision_algorithm_sdk.contract import check_manifest
from procvision_algorithm_sdk.errors import (
    INVALID_PARAMS,
    INVALID_PID,
    MANIFEST_MISSING,
    UNKNOWN_ERROR,
)
from procvision_algorithm_sdk.generation import EXECUTE_ONLY, manifest_api

from ._common import (
    CliError,
    error_result,
    load_image,
    load_manifest,
    parse_params,
    print_json,
    report_error,
)
from ._loader import describe_exception
from ._runner_session import open_runner
from .call_logs import CallLogs, print_logs
from .start_failure import StartFailed, report_start_failure


def prepare(project: Path, pid: str) -> dict[str, Any]:
    """Check project and pid before starting a worker (the Runner checks user_params: 1006)."""
    if not project.is_dir():
        raise CliError(MANIFEST_MISSING, f"project directory not found: {project}")
    manifest = load_manifest(project)
    problems = check_manifest(manifest)
    if problems:
        first = problems[0]
        raise CliError(first.code, f"{first.where}: {first.message}")
    if manifest_api(manifest) == EXECUTE_ONLY:
        return manifest  # any pid: an execute-only package serves what it is bound to
    pids = list(manifest["supported_pids"])
    if pid not in pids:
        raise CliError(INVALID_PID, f"pid {pid!r} is not supported; supported pids: {pids}")
    return manifest


def overlay_paths(images: list[str], out: str) -> list[tuple[str, str]]:
    """(image, overlay file): `out` for one image, `out` with -1, -2, ... before the suffix."""
    if len(images) == 1:
        return [(images[0], out)]
    target = Path(out)
    return [
        (image, str(target.with_name(f"{target.stem}-{n}{target.suffix or '.png'}")))
        for n, image in enumerate(images, start=1)
    ]


def timeout_config(timeout_s: float | None) -> dict[str, Any]:
    """Runner settings that make --timeout the deadline of every pre_execute and execute."""
    if timeout_s is None:
        return {}
    if not timeout_s > 0:
        raise CliError(INVALID_PARAMS, "--timeout must be a positive number of seconds")
    ms = max(1, int(timeout_s * 1000))
    return {"pre_execute_timeout_ms": ms, "execute_timeout_ms": ms, "hook_timeout_ms": ms}


def step_list(info: dict[str, Any], step: int | None, all_steps: bool) -> list[int]:
    """Return the steps to run: --all-steps in get_info() index order, else --step (default 1)."""
    if all_steps:
        steps: list[Any] = info["steps"] if isinstance(info.get("steps"), list) else []
        indexes = sorted(
            s["index"] for s in steps if isinstance(s, dict) and isinstance(s.get("index"), int)
        )
        return indexes or [1]
    return [step if step is not None else 1]


def run_steps(
    project: str | os.PathLike[str],
    pid: str,
    image_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    params: dict[str, Any] | None = None,
    *,
    step: int | None = None,
    all_steps: bool = False,
    session_id: str | None = None,
    config: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run steps on each image through one real adapter worker; one entry per image and step.

    Each image is one product (its own session unless `session_id` is given); every entry
    names its `image` and `step_index`, and has the worker's `logs` of that step (print,
    self.logger, tracebacks: `call_logs.log_entry`). CliError on bad input.
    """
    root = Path(project)
    paths = [image_path] if isinstance(image_path, str | os.PathLike) else list(image_path)
    images = [(str(path), load_image(path)) for path in paths]
    params = dict(params or {})
    if not root.is_dir():
        raise CliError(MANIFEST_MISSING, f"project directory not found: {root}")
    prepare(root, pid)
    outcomes: list[dict[str, Any]] = []
    # debug too: a developer's self.logger.debug lines are shown by `run -v`
    settings = {"log_level": "debug", **(config or {})}
    with CallLogs().capture() as logs, open_runner(root, logs, **settings) as (runner, info):
        for path, image in images:
            session = session_id or f"cli-{uuid.uuid4().hex[:12]}"
            for index in step_list(info, step, all_steps):
                logs.take(session)  # what came before this step is not its output
                result = runner.run_step(pid, index, image, user_params=params, session_id=session)
                outcomes.append(
                    {"image": path, "step_index": index, **result, "logs": logs.take(session)}
                )
            with contextlib.suppress(Exception):
                runner.close_session(session)
    return outcomes


def run(
    project: str | os.PathLike[str],
    pid: str,
    image_path: str | os.PathLike[str],
    params_json: str | None = None,
    step_index: int | None = None,
    guide_info: Any = None,
) -> dict[str, Any]:
    """Seed API: run one step (default 1); {"pre_execute": dict, "execute": dict}, never raises.

    An execute that did not run is {"status": "ERROR", "error_code": <the reason's code>,
    "message": "not run: ..."}: callers of the seed did `result["execute"].get("status")`.
    For an execute-only project the original 0.3.x call applies, positionally:
    `run(project, cur_image, guide_image, step_index, step_desc, guide_info)` -> {"execute"}.
    """
    from . import execute_only

    if execute_only.is_execute_only(project):
        # positions of the original call: (cur_image, guide_image, step_index, step_desc, info)
        step: Any = params_json
        desc: Any = step_index
        return execute_only.run(project, pid, image_path, step, desc, guide_info)
    try:
        params = parse_params(params_json)
        outcome = run_steps(project, pid, image_path, params, step=step_index)[0]
        return step_pair(outcome["pre_execute"], outcome["execute"])
    except CliError as exc:
        return refused(exc.code, exc.message)
    except Exception as exc:  # the Runner refused the package (RunnerError) or a bug of ours
        return refused(
            str(getattr(exc, "error_code", "") or UNKNOWN_ERROR), describe_exception(exc)
        )


def not_run(code: str, reason: str) -> dict[str, Any]:
    """The execute entry of a step whose execute never ran (the seed always gave a dict)."""
    return {"status": "ERROR", "error_code": str(code), "message": f"not run: {reason}", "data": {}}


def step_pair(pre: dict[str, Any], execute: dict[str, Any] | None) -> dict[str, Any]:
    """{"pre_execute", "execute"} with both dicts; a skipped execute says why, with pre's code."""
    if execute is None:
        code = str(pre.get("error_code") or UNKNOWN_ERROR)
        reason = f"pre_execute answered {pre.get('status')}: {pre.get('message') or ''}".strip()
        execute = not_run(code, reason)
    return {"pre_execute": pre, "execute": execute}


def refused(code: str, message: str) -> dict[str, Any]:
    """Both entries for a run that never reached the algorithm."""
    return {"pre_execute": error_result(code, message), "execute": not_run(code, message)}


def _timing(result: dict[str, Any] | None) -> str:
    timings = (result or {}).get("timings") or {}
    if not timings:
        return ""
    parts = [
        f"{key[:-3]} {timings[key]:.1f} ms"
        for key in ("total_ms", "algorithm_ms", "transfer_ms", "queue_ms")
        if isinstance(timings.get(key), (int, float))
    ]
    return ", ".join(parts)


def step_failed(outcome: dict[str, Any]) -> bool:
    """Whether pre_execute or execute of a step did not answer OK (or execute never ran)."""
    pre, result = outcome.get("pre_execute") or {}, outcome.get("execute")
    return pre.get("status") != "OK" or result is None or result.get("status") != "OK"


def print_outcome(outcome: dict[str, Any], verbose: bool = False) -> None:
    """Human output of one step: verdict, rects, latency; its logs with -v or when it failed."""
    _print_verdict(outcome)
    if verbose or step_failed(outcome):
        print_logs(outcome.get("logs") or [], say_none=verbose)


def _print_verdict(outcome: dict[str, Any]) -> None:
    index = outcome["step_index"]
    pre, result = outcome.get("pre_execute") or {}, outcome.get("execute")
    print(f"step {index}")
    line = f"  pre_execute: {pre.get('status')}"
    if pre.get("status") != "OK":
        line += f" ({pre.get('error_code')}) {pre.get('message') or ''}"
    calib = (pre.get("data") or {}).get("calibration_rects")
    if isinstance(calib, list):
        line += f", {len(calib)} calibration rects"
    print(line + (f"  [{_timing(pre)}]" if _timing(pre) else ""))
    if result is None:
        print("  execute: not called (pre_execute did not succeed)")
        return
    data = result.get("data") or {}
    line = f"  execute: {result.get('status')}"
    if result.get("status") != "OK":
        line += f" ({result.get('error_code')}) {result.get('message') or ''}"
    print(line + (f"  [{_timing(result)}]" if _timing(result) else ""))
    if result.get("status") == "OK":
        print(f"  verdict: {data.get('result_status')}")
        if data.get("ng_reason"):
            print(f"  ng_reason: {data['ng_reason']}")
        counts = [
            f"{len(data[key])} {key}"
            for key in ("defect_rects", "position_rects")
            if isinstance(data.get(key), list)
        ]
        if counts:
            print("  rects: " + ", ".join(counts))


def add_parser(subparsers: Any) -> None:
    """Register the run command."""
    parser = subparsers.add_parser(
        "run",
        help="run a step on an image through a real adapter process",
        description="Write the image into shared memory and call pre_execute then execute "
        "through the adapter. Exit 0 iff every execute status is OK.",
    )
    parser.add_argument("project", help="project directory")
    parser.add_argument("--pid", help="product id (must be in supported_pids; lifecycle API)")
    parser.add_argument(
        "--image",
        action="append",
        help="PNG, JPEG, BMP or TIFF file; repeat it to run several images (one session each; "
        "execute-only: the current image)",
    )
    parser.add_argument("--cur-image", help="execute-only API: the current camera image")
    parser.add_argument("--guide-image", help="execute-only API: the guide (reference) image")
    parser.add_argument("--step-desc", default="", help="execute-only API: the step's text")
    parser.add_argument("--guide-info", help="execute-only API: guide_info JSON, or @file.json")
    parser.add_argument("--entry", help="module:Class to run instead of the manifest's")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--step", type=int, default=None, help="step index (default 1)")
    group.add_argument("--all-steps", action="store_true", help="every step, in one session")
    parser.add_argument("--params", help="user_params as JSON, or @file.json")
    parser.add_argument("--session", help="session id (default: a new one)")
    parser.add_argument("--save-overlay", metavar="PNG", help="draw the result rects on the image")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show the worker's log lines (print, self.logger) of every step; a failed step "
        "always shows them",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="deadline of each pre_execute and execute in seconds (default: the contract's "
        "10 and 30); past it the call answers 1005",
    )
    parser.set_defaults(handler=_command)


def _command(args: argparse.Namespace) -> int:
    from . import execute_only

    if args.guide_image is not None or execute_only.is_execute_only(args.project):
        return _execute_only_command(args)
    missing = [flag for flag, value in (("--pid", args.pid), ("--image", args.image)) if not value]
    if missing:  # a usage error, as when argparse required them (exit 2)
        print(
            f"procvision-cli run: error: the following arguments are required: "
            f"{', '.join(missing)} (execute-only projects: --cur-image and --guide-image)",
            file=sys.stderr,
        )
        return 2
    try:
        params = parse_params(args.params)
        outcomes = run_steps(
            args.project,
            args.pid,
            args.image,
            params,
            step=args.step,
            all_steps=args.all_steps,
            session_id=args.session,
            config=timeout_config(args.timeout),
        )
    except StartFailed as exc:
        return report_start_failure(exc, args.json, args.verbose)
    except Exception as exc:  # CliError, or the Runner refusing the package (RunnerError)
        code = str(getattr(exc, "code", None) or getattr(exc, "error_code", None) or UNKNOWN_ERROR)
        message = exc.message if isinstance(exc, CliError) else describe_exception(exc)
        return report_error(code, message, args.json)
    if args.save_overlay:
        from .overlay import save_overlay

        for path, out in overlay_paths(args.image, args.save_overlay):
            save_overlay(path, [o for o in outcomes if o["image"] == path], out)
    ok = all((o.get("execute") or {}).get("status") == "OK" for o in outcomes)
    if args.json:
        for outcome in outcomes:
            if not (args.verbose or step_failed(outcome)):
                outcome.pop("logs", None)
        print_json({"steps": outcomes})  # one shape, whatever the step and image counts
    else:
        for outcome in outcomes:
            if len(args.image) > 1:
                print(f"image {outcome['image']}")
            print_outcome(outcome, args.verbose)
        if args.save_overlay:
            for _path, out in overlay_paths(args.image, args.save_overlay):
                print(f"overlay saved to {out}")
    return 0 if ok else 1


def _execute_only_command(args: argparse.Namespace) -> int:
    """`run` for an execute-only project: --cur-image (or --image) and --guide-image."""
    from . import execute_only

    cur = args.cur_image or (args.image[-1] if args.image else None)
    step = 1 if args.step is None else args.step
    try:
        if args.image and len(args.image) > 1:
            raise CliError(INVALID_PARAMS, "an execute-only project runs one --image at a time")
        if not cur or not args.guide_image:
            raise CliError(
                INVALID_PARAMS,
                "an execute-only project needs --cur-image (or --image) and --guide-image",
            )
        with CallLogs().capture() as logs:
            result = execute_only.run_execute_only(
                args.project,
                cur,
                args.guide_image,
                step=step,
                step_desc=args.step_desc,
                guide_info=execute_only.parse_guide_info(args.guide_info),
                entry=args.entry,
                logs=logs,
            )
    except StartFailed as exc:
        return report_start_failure(exc, args.json, args.verbose)
    except Exception as exc:  # CliError, or the Runner refusing the package (RunnerError)
        code = str(getattr(exc, "code", None) or getattr(exc, "error_code", None) or UNKNOWN_ERROR)
        message = exc.message if isinstance(exc, CliError) else describe_exception(exc)
        return report_error(code, message, args.json)
    if args.save_overlay:
        from .overlay import save_overlay

        save_overlay(cur, [{"step_index": step, "execute": result}], args.save_overlay)
    entries = result.pop("logs", [])
    failed = result.get("status") != "OK"
    if args.json:
        shown = {"logs": entries} if args.verbose or failed else {}
        # the shape of every other run: one entry per image and step
        print_json({"steps": [{"image": cur, "step_index": step, "execute": result, **shown}]})
    else:
        print(f"step {step} (execute-only)")
        data = result.get("data") or {}
        line = f"  execute: {result.get('status')}"
        if result.get("status") != "OK":
            line += f" ({result.get('error_code')}) {result.get('message') or ''}"
        print(line + (f"  [{_timing(result)}]" if _timing(result) else ""))
        if result.get("status") == "OK":
            print(f"  verdict: {data.get('result_status')}")
            if data.get("ng_reason"):
                print(f"  ng_reason: {data['ng_reason']}")
        if args.verbose or failed:
            print_logs(entries, say_none=args.verbose)
    return 0 if result.get("status") == "OK" else 1
