"""`procvision-cli bench`: latency percentiles of one step through a real adapter worker, and how
much of it is the algorithm, image transport, queueing and the protocol."""

from __future__ import annotations

import argparse
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any

from procvision_algorithm_sdk.errors import INVALID_PARAMS, UNKNOWN_ERROR, ProcVisionError

from ._common import CliError, load_image, load_manifest, parse_params, print_json, report_error
from ._loader import describe_exception
from .execute_only import DEV_PID, is_execute_only, parse_guide_info
from .run import open_runner, prepare

PARTS = ("algorithm_ms", "transfer_ms", "queue_ms")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def stats(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/max/mean of a series, rounded to microseconds."""
    if not values:
        return {}
    return {
        "p50": round(percentile(values, 50), 3),
        "p95": round(percentile(values, 95), 3),
        "p99": round(percentile(values, 99), 3),
        "max": round(max(values), 3),
        "mean": round(sum(values) / len(values), 3),
    }


def bench(
    project: str | os.PathLike[str],
    pid: str,
    image_path: str | os.PathLike[str],
    *,
    step: int = 1,
    iterations: int = 200,
    warmup: int = 10,
    params: dict[str, Any] | None = None,
    guide_image: str | os.PathLike[str] | None = None,
    step_desc: str | None = None,
    guide_info: list[Any] | None = None,
) -> dict[str, Any]:
    """Run the step `warmup + iterations` times; return percentiles and the time breakdown.

    An execute-only project takes `guide_image` (and `step_desc`, `guide_info`); pre_execute
    is then absent from the series.
    """
    if iterations < 1 or warmup < 0:
        raise CliError(UNKNOWN_ERROR, "-n must be >= 1 and --warmup >= 0")
    root = Path(project)
    image = load_image(image_path)
    guide: dict[str, Any] = {}
    if is_execute_only(root):
        if guide_image is None:
            raise CliError(INVALID_PARAMS, "an execute-only project needs --guide-image")
        pid = pid or DEV_PID
        guide = {
            "guide_frame": load_image(guide_image),
            "step_desc": step_desc or "",
            "guide_info": guide_info or [],
        }
    elif not pid:
        raise CliError(INVALID_PARAMS, "bench needs --pid (lifecycle API)")
    prepare(root, pid)
    load_manifest(root)
    series: dict[str, list[float]] = {"round_trip": [], "pre_execute": [], "execute": []}
    parts: dict[str, dict[str, list[float]]] = {
        phase: {part: [] for part in (*PARTS, "protocol_ms")} for phase in ("pre", "execute")
    }
    failures: dict[str, int] = {}
    session = f"bench-{uuid.uuid4().hex[:12]}"
    with open_runner(root) as (runner, _info):
        for number in range(warmup + iterations):
            started = time.perf_counter()
            outcome = runner.run_step(
                pid, step, image, user_params=dict(params or {}), session_id=session, **guide
            )
            elapsed = (time.perf_counter() - started) * 1000.0
            if number < warmup:
                continue
            for phase, key in (("pre", "pre_execute"), ("execute", "execute")):
                result = outcome.get(key)
                if result is None:
                    continue
                if result.get("status") != "OK":
                    code = str(result.get("error_code"))
                    failures[code] = failures.get(code, 0) + 1
                timings = result.get("timings") or {}
                total = float(timings.get("total_ms") or 0.0)
                series[key].append(total)
                known = 0.0
                for part in PARTS:
                    value = float(timings.get(part) or 0.0)
                    parts[phase][part].append(value)
                    known += value
                parts[phase]["protocol_ms"].append(max(0.0, total - known))
            series["round_trip"].append(elapsed)
        runner.close_session(session)
    breakdown = {
        phase: {part: stats(values) for part, values in by_part.items() if values}
        for phase, by_part in parts.items()
    }
    return {
        "project": str(root),
        "pid": pid,
        "step": step,
        "iterations": iterations,
        "warmup": warmup,
        "image": {"width": int(image.shape[1]), "height": int(image.shape[0])},
        "latency_ms": {name: stats(values) for name, values in series.items()},
        "breakdown_ms": breakdown,
        "failures": failures,
    }


def _print(summary: dict[str, Any]) -> None:
    image = summary["image"]
    print(
        f"bench {summary['project']} pid {summary['pid']} step {summary['step']}: "
        f"{summary['iterations']} runs after {summary['warmup']} warm-up, "
        f"image {image['width']}x{image['height']}"
    )
    print(f"  {'ms':<14}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}")
    for name, values in summary["latency_ms"].items():
        if values:
            print(
                f"  {name:<14}"
                + "".join(f"{values[k]:>9.3f}" for k in ("p50", "p95", "p99", "max"))
            )
    for phase, by_part in summary["breakdown_ms"].items():
        if not by_part:
            continue  # an execute-only package has no pre phase
        total = sum(v["mean"] for v in by_part.values()) or 1.0
        shares = ", ".join(
            f"{part[:-3]} {values['mean']:.3f} ms ({100 * values['mean'] / total:.0f}%)"
            for part, values in by_part.items()
        )
        print(f"  {phase} mean: {shares}")
    if summary["failures"]:
        print(f"  failures by code: {summary['failures']}")


def add_parser(subparsers: Any) -> None:
    """Register the bench command."""
    parser = subparsers.add_parser(
        "bench",
        help="benchmark a step through the adapter",
        description="Run a step many times through a real adapter worker and print p50/p95/"
        "p99/max for pre_execute, execute and the round trip, and the share of the algorithm, "
        "image transport, queueing and protocol.",
    )
    parser.add_argument("project", help="project directory")
    parser.add_argument("--pid", help="product id (lifecycle API; execute-only: any, default dev)")
    parser.add_argument(
        "--image", "--cur-image", dest="image", required=True, help="PNG, JPEG or BMP file"
    )
    parser.add_argument("--guide-image", help="execute-only API: the guide (reference) image")
    parser.add_argument("--step-desc", default="", help="execute-only API: the step's text")
    parser.add_argument("--guide-info", help="execute-only API: guide_info JSON, or @file.json")
    parser.add_argument("--step", type=int, default=1)
    parser.add_argument("-n", "--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--params", help="user_params as JSON, or @file.json")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=_command)


def _command(args: argparse.Namespace) -> int:
    try:
        summary = bench(
            args.project,
            args.pid,
            args.image,
            step=args.step,
            iterations=args.iterations,
            warmup=args.warmup,
            params=parse_params(args.params),
            guide_image=args.guide_image,
            step_desc=args.step_desc,
            guide_info=parse_guide_info(args.guide_info),
        )
    except Exception as exc:  # CliError, or the Runner refusing the package (RunnerError)
        code = str(exc.error_code) if isinstance(exc, ProcVisionError) else UNKNOWN_ERROR
        message = exc.message if isinstance(exc, CliError) else describe_exception(exc)
        return report_error(code, message, args.json)
    if args.json:
        print_json(summary)
    else:
        _print(summary)
    return 0 if not summary["failures"] else 1
