"""`procvision-runner`: the station's command line for the package store and one-off inspections.

Exit status: 0 success, 1 refused or failed (`error <code>: <message>` on stderr), 2 usage.
Commands are rows of COMMANDS (name, help, add_arguments, handler); `build_parser()` builds the
argparse parser from them, `main()` dispatches through them. Add a command by appending a row.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from procvision_algorithm_sdk._version import __version__
from procvision_algorithm_sdk.errors import (
    INVALID_PARAMS,
    ProcVisionError,
)

from ._stdout import dump_json, quiet_on_closed_pipe
from .cli_inspect import add_inspect_arguments, cmd_inspect

if TYPE_CHECKING:  # the types of the names __getattr__ loads on first access
    from .service import ServiceConfig
    from .store import PackageManager as PackageManager
    from .store import default_root as default_root
    from .store.opening import configs_from as configs_from
    from .store.opening import load_configs as load_config  # noqa: F401 (re-export)
    from .store.opening import load_configs as load_configs
    from .store.opening import open_manager as open_manager
    from .store.opening import read_document as read_document
    from .store.progress import print_progress as print_progress

log = logging.getLogger("procvision_runner.service")


@dataclass
class Command:
    """One subcommand: how to parse it and what runs it (returns the exit status)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]


# -- configuration ---------------------------------------------------------------------------

# Names this module has always offered, loaded on first use: the store pulls in the package
# checks, signing and the resolver, which `--help` and most commands never need.
_FROM_STORE = frozenset(
    {"PackageManager", "default_root", "configs_from", "load_config", "load_configs"}
    | {"open_manager", "read_document", "print_progress"}
)


def __getattr__(name: str) -> Any:
    """The store names this module re-exports, imported on first access (PEP 562)."""
    if name not in _FROM_STORE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from .store import opening, progress

    wanted = "load_configs" if name == "load_config" else name
    value = getattr(progress if name == "print_progress" else opening, wanted)
    globals()[name] = value
    return value


def _store_root(args: argparse.Namespace) -> Path:
    from .store import default_root

    return Path(args.store) if getattr(args, "store", None) else default_root()


def _manager(args: argparse.Namespace, *, query: bool = False) -> PackageManager:
    """query: a command that changes nothing never waits on a store a server owns (no reconcile)."""
    from .store.opening import open_manager

    return open_manager(_store_root(args), config_path=getattr(args, "config", None), query=query)


def _changing(args: argparse.Namespace) -> AbstractContextManager[Any]:
    """The store to change: directly (holding its owner lock), or through the owning server."""
    from .remote import changing
    from .store.opening import load_configs

    _, store_cfg = load_configs(getattr(args, "config", None))
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
    """Install a zip into the store: each step on stderr as it starts, the entry on stdout."""
    from .store.progress import print_progress

    flags = {"replace": args.replace, "keep_bundled_sdk": args.keep_bundled_sdk}
    with _changing(args) as manager:
        entry = manager.install(Path(args.zip), progress=print_progress(sys.stderr), **flags)
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


def _args_serve(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="bind address (default 127.0.0.1; others need a token)")
    p.add_argument("--port", type=int, help="TCP port (default 8765)")
    p.add_argument("--log-file", help="write the JSON log to FILE, rotated ([service] log_file)")


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the HTTP service (procvision_runner.service) until SIGINT/SIGTERM."""
    return serve_from_args(args)


def serve_from_args(args: Any) -> int:
    """`procvision-runner serve`: open the store, start a Runner, serve until SIGINT/SIGTERM."""
    from .service import ServiceConfig, check_bind
    from .service.logsetup import configure_logging
    from .service.server import log_settings
    from .store.opening import read_document

    doc = read_document(getattr(args, "config", None))  # the one read of the file
    try:
        config = ServiceConfig.from_document(doc)
    except ValueError as exc:  # a bad [service] value: an error line, not a traceback
        print(f"error {INVALID_PARAMS}: {exc}", file=sys.stderr, flush=True)
        return 1
    if getattr(args, "log_file", None):
        config = dataclasses.replace(config, log_file=args.log_file)
    host = args.host or config.host
    port = config.port if args.port is None else args.port
    # Refuse before any worker starts: an unsafe bind must not even warm packages.
    refusal = check_bind(host, config)
    if refusal:
        print(f"error {INVALID_PARAMS}: {refusal}", file=sys.stderr, flush=True)
        return 1
    try:  # before the Runner: its start-up records belong in the log as well
        undo_logging = configure_logging(log_settings(config))
    except OSError as exc:
        print(f"error {INVALID_PARAMS}: log file: {exc}", file=sys.stderr, flush=True)
        return 1
    try:
        return _serve_store(args, doc, config, host, port)
    finally:
        undo_logging()


def _serve_store(args: Any, doc: Any, config: ServiceConfig, host: str, port: int) -> int:
    """Claim the store, start the Runner, print the banner and serve."""
    from .config import RunnerConfig
    from .runner import Runner
    from .service import banner, serve
    from .store.opening import configs_from, open_manager
    from .store.owner import claim_store

    runner_cfg, store_cfg = configs_from(doc)
    runner_cfg = runner_cfg or RunnerConfig()
    root = _store_root(args)
    if runner_cfg.state_dir is None:  # a server records its workers' groups in its store
        runner_cfg = dataclasses.replace(runner_cfg, state_dir=str(root.absolute() / "run"))
    # The store is ours for the server's life, claimed before the Runner exists: a second
    # server is refused here with no worker started, and the CLI sends its changes to us.
    with (
        claim_store(root, host, port, wait_s=store_cfg.lock_timeout_s),
        Runner(runner_cfg) as runner,
    ):
        manager = open_manager(root, runner, (runner_cfg, store_cfg), role="serve")
        text = banner(manager, host, port)
        print(text, file=sys.stderr, flush=True)  # for the person who started it
        log.info("serving", extra={"banner": text.splitlines(), "store": str(root)})
        try:
            return serve(manager, runner, config, host, port)
        finally:
            runner.close()  # workers stop before their leases and the ownership go
            manager.close()


COMMANDS: list[Command] = [
    Command("install", "install an offline package zip", _args_install, cmd_install),
    Command("activate", "bind pids to an installed version", _args_bind, cmd_activate),
    Command("switch", "rebind pids to another version, no call lost", _args_bind, cmd_switch),
    Command("rollback", "re-bind a pid to its previous version", _args_pid, cmd_rollback),
    Command("deactivate", "unbind a pid", _args_pid, cmd_deactivate),
    Command("uninstall", "remove an installed version", _args_uninstall, cmd_uninstall),
    Command("list", "installed versions and bindings", _args_list, cmd_list),
    Command("inspect", "run one step on an image file", add_inspect_arguments, cmd_inspect),
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
