"""`procvision-runner inspect`: run steps on image files through the active version of a pid."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from procvision_algorithm_sdk.errors import (
    IMAGE_LOAD_FAILED,
    INVALID_PARAMS,
    INVALID_PID,
    UNKNOWN_ERROR,
    ImageLoadError,
)

from ._stdout import dump_json
from .store.lock import StoreError

if TYPE_CHECKING:
    from .store import PackageManager

__all__ = ["add_inspect_arguments", "cmd_inspect"]


def add_inspect_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of `inspect`."""
    p.add_argument("--pid", required=True)
    p.add_argument(
        "--step",
        type=int,
        required=True,
        action="append",
        help="step index; repeat to run several steps in order in one session",
    )
    p.add_argument(
        "--image",
        required=True,
        action="append",
        help="image file (PNG, JPEG, ...); repeat to inspect several, one session each",
    )
    p.add_argument("--params", help="user_params as JSON, or @file")
    p.add_argument("--session", help="session id (default: a fresh one per image)")
    p.add_argument("--guide-image", help="execute-only packages: the guide (reference) image")
    p.add_argument("--step-desc", help="execute-only packages: the step's text")
    p.add_argument("--guide-info", help="execute-only packages: guide_info JSON list, or @file")
    p.add_argument(
        "--json", action="store_true", help="print the Runner's result dict (one line per step)"
    )
    p.add_argument(
        "--save-overlay",
        metavar="DIR",
        help="write one overlay PNG per image and step into DIR (<image>-step<N>.png): rects, "
        "labels, an OK/NG banner with ng_reason, a legend",
    )


def _read_json_option(option: str, text: str, kind: type, kind_name: str) -> Any:
    """An option's JSON value, given inline or as @file, of one kind (StoreError 1006 if not)."""
    try:
        raw = Path(text[1:]).read_text(encoding="utf-8") if text.startswith("@") else text
        value = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise StoreError(INVALID_PARAMS, f"{option}: {exc}") from exc
    if not isinstance(value, kind):
        raise StoreError(INVALID_PARAMS, f"{option} must be a JSON {kind_name}")
    return value


def _read_params(text: str | None) -> dict | None:
    if text is None:
        return None
    value: dict = _read_json_option("--params", text, dict, "object")
    return value


def _read_guide(args: argparse.Namespace) -> dict[str, Any]:
    """The execute-only arguments of inspect (only those given: a lifecycle package refuses)."""
    guide: dict[str, Any] = {}
    if args.guide_image is not None:
        guide["guide_frame"] = _read_image(args.guide_image)
    if args.step_desc is not None:
        guide["step_desc"] = args.step_desc
    if args.guide_info is not None:
        guide["guide_info"] = _read_json_option("--guide-info", args.guide_info, list, "list")
    return guide


def _read_image(path: str) -> Any:
    from procvision_algorithm_sdk.imagefile import decode_image

    try:
        return decode_image(path)
    except ImageLoadError as exc:
        raise StoreError(IMAGE_LOAD_FAILED, str(exc)) from None


def _describe(phase: str, result: dict | None) -> str:
    if result is None:
        return f"{phase}: not run"
    text = f"{phase}: {result.get('status')}"
    data = result.get("data") or {}
    if isinstance(data, dict) and data.get("result_status"):
        text += f" result_status={data['result_status']}"
        if data.get("ng_reason"):
            text += f" ng_reason={data['ng_reason']!r}"
        if data.get("defect_rects"):
            text += f" defects={len(data['defect_rects'])}"
    if result.get("error_code"):
        text += f" error_code={result['error_code']}"
    if result.get("message"):
        text += f" message={result['message']!r}"
    ms = (result.get("timings") or {}).get("total_ms")
    if ms is not None:
        text += f" ({ms:.1f} ms)"
    return text


def cmd_inspect(args: argparse.Namespace) -> int:
    """Run steps on image files through the active version of a pid, one session per image."""
    from .runner import Runner
    from .store.opening import load_configs, open_manager

    params = _read_params(args.params)
    if args.save_overlay:
        _overlay_dir(args.save_overlay)
    frames = [(path, _read_image(path)) for path in args.image]
    guide = _read_guide(args)
    configs = load_configs(args.config)
    runner_cfg = configs[0]
    with Runner(runner_cfg) as runner:
        root = Path(args.store) if getattr(args, "store", None) else None
        manager = open_manager(root, runner, configs, role="inspect", query=True)
        try:
            failed = _inspect_frames(args, runner, manager, params, frames, guide)
        finally:
            runner.close()  # its workers stop before the leases on their version go
            manager.close()
    return _finish_inspect(failed)


def _inspect_frames(
    args: argparse.Namespace,
    runner: Any,
    manager: PackageManager,
    params: dict | None,
    frames: list,
    guide: dict[str, Any],
) -> dict | None:
    """Run every step on every frame; the first result that is not OK, or None."""
    if args.pid not in manager.active():
        raise StoreError(INVALID_PID, f"{args.pid} is not bound to any package")
    manager.start([args.pid])
    failed: dict | None = None
    for number, (path, frame) in enumerate(frames):
        # Steps of one image share a session, so later steps see what earlier ones stored.
        session_id = args.session or f"inspect-{os.getpid()}-{number}"
        for step in args.step:
            result = runner.run_step(
                args.pid, step, frame, user_params=params, session_id=session_id, **guide
            )
            _print_inspection(args, path, step, result)
            if args.save_overlay:
                _save_overlay(args, number, path, frame, step, result)
            last = result.get("execute") or result.get("pre_execute") or {}
            if last.get("status") != "OK" and failed is None:
                failed = last
        runner.close_session(session_id)
    return failed


def _overlay_dir(text: str) -> Path:
    """The --save-overlay folder, made if missing (StoreError 9999 if it cannot be)."""
    folder = Path(text)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(UNKNOWN_ERROR, f"--save-overlay: cannot create {folder}: {exc}") from None
    if not folder.is_dir():
        raise StoreError(UNKNOWN_ERROR, f"--save-overlay: {folder} is not a directory")
    return folder


def overlay_name(images: list[str], number: int, step: int) -> str:
    """`<image stem>-step<N>.png`; prefixed with the image's position when two stems clash."""
    stems = [re.sub(r"[^\w.-]+", "_", Path(p).stem, flags=re.UNICODE) or "image" for p in images]
    stem = stems[number]
    if stems.count(stem) > 1:
        stem = f"{number + 1:03d}-{stem}"
    return f"{stem}-step{step}.png"


def _save_overlay(
    args: argparse.Namespace, number: int, path: str, frame: Any, step: int, result: dict
) -> None:
    from .overlay import save_overlay

    out = Path(args.save_overlay) / overlay_name(args.image, number, step)
    try:
        save_overlay(frame, [result], out)
    except OSError as exc:
        raise StoreError(UNKNOWN_ERROR, f"cannot write overlay {out}: {exc}") from None
    # stdout stays the results (one JSON line per step with --json); the file goes to stderr then
    print(f"  overlay saved to {out}", file=sys.stderr if args.json else sys.stdout, flush=True)


def _finish_inspect(failed: dict | None) -> int:
    if failed is not None:
        code = failed.get("error_code") or UNKNOWN_ERROR
        message = failed.get("message") or "the step did not succeed"
        print(f"error {code}: {message}", file=sys.stderr)
        return 1
    return 0


def _print_inspection(args: argparse.Namespace, path: str, step: int, result: dict) -> None:
    if args.json:
        print(dump_json(result, indent=None), flush=True)  # one JSON line per image
        return
    first = result.get("pre_execute") or result.get("execute") or {}
    pkg = result.get("package") or first.get("package") or {}
    print(
        f"{Path(path).name} pid={args.pid} step={step} "
        f"package={pkg.get('name')} {pkg.get('version')}"
    )
    if result.get("pre_execute") is not None or result.get("execute") is None:
        print("  " + _describe("pre_execute", result.get("pre_execute")))  # none: execute-only
    print("  " + _describe("execute", result.get("execute")), flush=True)
