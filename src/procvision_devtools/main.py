"""Argument parsing and dispatch of `procvision-cli`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from procvision_algorithm_sdk._version import __version__
from procvision_runner._stdout import quiet_on_closed_pipe

from ._common import CliError, report_error


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="procvision-cli",
        description="ProcVision Dev Runner: validate, run, scaffold, package and benchmark "
        "algorithm projects.",
    )
    parser.add_argument("--version", action="version", version=f"procvision-cli {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    # import_module: the package's `validate` and `run` attributes are the seed functions
    for command in ("validate", "run", "init", "package", "bench"):
        importlib.import_module(f"{__package__}.{command}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (2 for usage errors and a missing subcommand)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    return quiet_on_closed_pipe(lambda: _dispatch(handler, args))


def _dispatch(handler: Any, args: argparse.Namespace) -> int:
    try:
        return int(handler(args))
    except CliError as exc:
        return report_error(exc.code, exc.message)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
