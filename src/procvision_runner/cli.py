"""`procvision-runner`: the station's command line for the package store and one-off inspections.

Exit status: 0 success, 1 refused or failed (`error <code>: <message>` on stderr), 2 usage.
Commands are rows of COMMANDS (name, help, add_arguments, handler); `build_parser()` builds the
argparse parser from them, `main()` dispatches through them. Add a command by appending a row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from procvision_algorithm_sdk._version import __version__
from procvision_algorithm_sdk.errors import (
    IMAGE_LOAD_FAILED,
    INVALID_PARAMS,
    INVALID_PID,
    UNKNOWN_ERROR,
    ImageLoadError,
    ProcVisionError,
)

from ._stdout import dump_json, quiet_on_closed_pipe
from .store import PackageManager, PackageStore, StoreConfig, StoreError, default_root


@dataclass
class Command:
    """One subcommand: how to parse it and what runs it (returns the exit status)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]


# -- configuration ---------------------------------------------------------------------------


def load_config(path: str | Path | None) -> tuple[Any, StoreConfig]:
    """Read a JSON or TOML config: `runner` table -> RunnerConfig, `store` table -> StoreConfig."""
    return configs_from(_read_document(path))


def _read_document(path: str | Path | None) -> Any:
    from .config import ConfigFileError
    from .config import load_config as read_document

    try:
        return read_document(path)
    except ConfigFileError as exc:
        raise StoreError(INVALID_PARAMS, str(exc)) from exc


def configs_from(doc: Any) -> tuple[Any, StoreConfig]:
    """The RunnerConfig (None without a `runner` table) and StoreConfig of a ConfigDocument."""
    return doc.runner_config(), StoreConfig.from_dict(doc.store or {})


def _store_root(args: argparse.Namespace) -> Path:
    return Path(args.store) if getattr(args, "store", None) else default_root()


def _manager(
    args: argparse.Namespace,
    runner: Any = None,
    configs: tuple[Any, StoreConfig] | None = None,
    *,
    role: str = "runner",
    query: bool = False,
) -> PackageManager:
    """query: a command that changes nothing never waits on a store a server owns (no reconcile)."""
    from .store.owner import live_owner

    runner_cfg, store_cfg = configs or load_config(getattr(args, "config", None))
    store = PackageStore(_store_root(args), lock_timeout_s=store_cfg.lock_timeout_s)
    store.open(reconcile=not (query and live_owner(store.root) is not None))
    return PackageManager(store, runner, config=store_cfg, runner_config=runner_cfg, role=role)


def _changing(args: argparse.Namespace) -> AbstractContextManager[Any]:
    """The store to change: directly (holding its owner lock), or through the owning server."""
    from .remote import changing

    _, store_cfg = load_config(getattr(args, "config", None))
    return changing(
        _store_root(args),
        lambda: _manager(args),
        config_path=getattr(args, "config", None),
        lock_wait_s=store_cfg.lock_timeout_s,
        call_timeout_s=store_cfg.lock_timeout_s + store_cfg.install_timeout_s + 300.0,
        reach_timeout_s=getattr(args, "server_timeout", None) or 5.0,
    )


def _print_json(value: object) -> None:
    print(dump_json(value))


# -- commands --------------------------------------------------------------------------------


def _args_install(p: argparse.ArgumentParser) -> None:
    p.add_argument("zip", help="offline package zip")
    p.add_argument("--replace", action="store_true", help="reinstall an inactive version")
    p.add_argument(
        "--keep-bundled-sdk",
        action="store_true",
        help="keep a bundled original SDK instead of ours (earlier protocol, frames as files)",
    )
    p.add_argument("--json", action="store_true", help="print the registry entry as JSON")


def cmd_install(args: argparse.Namespace) -> int:
    """Install a zip into the store."""
    with _changing(args) as manager:
        entry = manager.install(
            Path(args.zip), replace=args.replace, keep_bundled_sdk=args.keep_bundled_sdk
        )
    if args.json:
        _print_json(entry)
    else:
        print(f"installed {entry['name']} {entry['version']} (pids {entry['supported_pids']})")
    return 0


def _args_bind(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("version")
    p.add_argument("--pid", action="append", required=True, help="repeat for several pids")


def cmd_activate(args: argparse.Namespace) -> int:
    """Bind pids to an installed version."""
    with _changing(args) as manager:
        out = manager.activate(args.name, args.version, args.pid)
    print(f"activated {out['name']} {out['version']} for {', '.join(out['pids'])}")
    return 0


def cmd_switch(args: argparse.Namespace) -> int:
    """Rebind pids to another version."""
    with _changing(args) as manager:
        out = manager.switch(args.name, args.version, args.pid)
    prev = ", ".join(f"{p} was {b['name']} {b['version']}" for p, b in out["previous"].items())
    print(
        f"switched {', '.join(out['pids'])} to {out['name']} {out['version']}"
        + (f" ({prev})" if prev else "")
    )
    return 0


def _args_pid(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pid", required=True)


def cmd_rollback(args: argparse.Namespace) -> int:
    """Re-bind a pid to its previous version."""
    with _changing(args) as manager:
        out = manager.rollback(args.pid)
    was = out["rolled_back_from"]
    print(
        f"rolled {args.pid} back to {out['name']} {out['version']} "
        f"(from {was['name']} {was['version']})"
    )
    return 0


def cmd_deactivate(args: argparse.Namespace) -> int:
    """Unbind a pid."""
    with _changing(args) as manager:
        out = manager.deactivate(args.pid)
    print(f"deactivated {out['pid']} (was {out['name']} {out['version']})")
    return 0


def _args_uninstall(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("version")
    p.add_argument("--force", action="store_true", help="unbind its pids and stop it first")


def cmd_uninstall(args: argparse.Namespace) -> int:
    """Remove an installed version."""
    with _changing(args) as manager:
        out = manager.uninstall(args.name, args.version, force=args.force)
    extra = f" (deactivated {', '.join(out['deactivated'])})" if out["deactivated"] else ""
    print(f"uninstalled {out['name']} {out['version']}{extra}")
    return 0


def _args_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")


def cmd_list(args: argparse.Namespace) -> int:
    """Show installed versions and pid bindings."""
    manager = _manager(args, query=True)
    packages, active = manager.list(), manager.active()
    if args.json:
        _print_json({"packages": packages, "active": active})
        return 0
    if not packages:
        print("no packages installed")
    for p in packages:
        pids = ",".join(p["active_pids"]) or "-"
        print(
            f"{p['name']:<24} {p['version']:<12} {p['state']:<9} pids={pids:<16} {p['created_at']}"
        )
    return 0


def _args_inspect(p: argparse.ArgumentParser) -> None:
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


def _read_params(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        raw = Path(text[1:]).read_text(encoding="utf-8") if text.startswith("@") else text
        value = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise StoreError(INVALID_PARAMS, f"--params: {exc}") from exc
    if not isinstance(value, dict):
        raise StoreError(INVALID_PARAMS, "--params must be a JSON object")
    return value


def _read_guide(args: argparse.Namespace) -> dict[str, Any]:
    """The execute-only arguments of inspect (only those given: a lifecycle package refuses)."""
    guide: dict[str, Any] = {}
    if args.guide_image is not None:
        guide["guide_frame"] = _read_image(args.guide_image)
    if args.step_desc is not None:
        guide["step_desc"] = args.step_desc
    if args.guide_info is not None:
        text = args.guide_info
        try:
            raw = Path(text[1:]).read_text(encoding="utf-8") if text.startswith("@") else text
            value = json.loads(raw)
        except (OSError, ValueError) as exc:
            raise StoreError(INVALID_PARAMS, f"--guide-info: {exc}") from exc
        if not isinstance(value, list):
            raise StoreError(INVALID_PARAMS, "--guide-info must be a JSON list")
        guide["guide_info"] = value
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

    params = _read_params(args.params)
    frames = [(path, _read_image(path)) for path in args.image]
    guide = _read_guide(args)
    runner_cfg, _ = load_config(args.config)
    with Runner(runner_cfg) as runner:
        manager = _manager(args, runner, role="inspect", query=True)
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
            last = result.get("execute") or result.get("pre_execute") or {}
            if last.get("status") != "OK" and failed is None:
                failed = last
        runner.close_session(session_id)
    return failed


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


def _args_serve(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="bind address (default 127.0.0.1; others need a token)")
    p.add_argument("--port", type=int, help="TCP port (default 8765)")


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the HTTP service (procvision_runner.service) until SIGINT/SIGTERM."""
    from .service import serve_from_args

    return serve_from_args(args)


COMMANDS: list[Command] = [
    Command("install", "install an offline package zip", _args_install, cmd_install),
    Command("activate", "bind pids to an installed version", _args_bind, cmd_activate),
    Command("switch", "rebind pids to another version, no call lost", _args_bind, cmd_switch),
    Command("rollback", "re-bind a pid to its previous version", _args_pid, cmd_rollback),
    Command("deactivate", "unbind a pid", _args_pid, cmd_deactivate),
    Command("uninstall", "remove an installed version", _args_uninstall, cmd_uninstall),
    Command("list", "installed versions and bindings", _args_list, cmd_list),
    Command("inspect", "run one step on an image file", _args_inspect, cmd_inspect),
    Command("serve", "run the HTTP service (management, inspection)", _args_serve, cmd_serve),
]


def _global_options(p: argparse.ArgumentParser, default: Any) -> None:
    p.add_argument(
        "--store",
        default=default,
        help="store directory (default: $PROCVISION_HOME, else ./.procvision)",
    )
    p.add_argument("--config", default=default, help="JSON or TOML file: [runner] and [store]")
    # while a server owns the store, changes go through it: how long it may take to answer
    srv_help = "give up on the store's server after S s (default 5)"
    p.add_argument("--server-timeout", type=float, default=default, metavar="S", help=srv_help)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser for every row of COMMANDS (global options before or after it)."""
    parser = argparse.ArgumentParser(
        prog="procvision-runner", description="ProcVision station runner: packages and inspection"
    )
    parser.add_argument("--version", action="version", version=f"procvision-runner {__version__}")
    _global_options(parser, None)
    shared = argparse.ArgumentParser(add_help=False)
    _global_options(shared, argparse.SUPPRESS)  # after the command too, without clobbering
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, parents=[shared])
        command.add_arguments(p)
        p.set_defaults(handler=command.handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `procvision-runner`."""
    args = build_parser().parse_args(argv)
    return quiet_on_closed_pipe(lambda: _dispatch(args))


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return int(args.handler(args))
    except ProcVisionError as exc:
        print(f"error {exc.error_code}: {exc.message or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error 9999: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
