"""The station `init` writes into `.procvision_env.json`: given, asked on a TTY, or a default.

The station, not the developer's machine, decides which wheels `package` downloads: its OS and
CPU (a short name like `win_amd64` / `linux_x86_64`, or a wheel platform tag) and its Python
version. Without `--target` / `--python-version` and with a person at a terminal, `init` asks;
otherwise it takes this machine's OS family at its broadest tag (never this machine's glibc)
and this interpreter's version, and says so.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO

from procvision_algorithm_sdk.errors import INVALID_PARAMS

from ._common import CliError
from ._target import (
    PLATFORM_ALIASES,
    platform_alias,
    python_tag,
    station_target,
    wheel_platform,
)

__all__ = ["choose_target", "interactive"]

_ASKS = 3  # wrong answers before init gives up


def interactive(stdin: TextIO | None = None, stdout: TextIO | None = None) -> bool:
    """True when a person is at a terminal on both ends (init may ask)."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    try:
        return stdin.isatty() and stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _check_platform(text: str) -> str:
    tag = wheel_platform(text)
    if tag is None:
        raise CliError(
            INVALID_PARAMS,
            f"--target {text!r} is not a station platform: use one of "
            f"{', '.join(PLATFORM_ALIASES)} or a wheel platform tag (manylinux2014_x86_64)",
        )
    return tag


def _check_python(text: str) -> str:
    version = python_tag(text)
    if version is None:
        raise CliError(INVALID_PARAMS, f"--python-version {text!r} must look like 3.10")
    return version


def _ask(question: str, default: str, check: Callable[[str], str], ask: Callable) -> str:
    for _ in range(_ASKS):
        try:
            answer = ask(f"{question} [{default}]: ").strip() or default
        except EOFError:
            answer = default
        try:
            return check(answer)
        except CliError as exc:
            print(f"  {exc.message}", file=sys.stderr)
    raise CliError(INVALID_PARAMS, f"no valid answer to {question!r}")


def choose_target(
    target: str | None,
    python_version: str | None,
    ask: Callable[[str], str] | None = None,
) -> tuple[dict[str, Any], str | None]:
    """The station target (the env file's content) and a note when a default was taken.

    `ask` (e.g. `input`) is used for what was not given; without it the defaults are taken.
    """
    default_platform = platform_alias()
    default_python = "{}.{}".format(*sys.version_info[:2])
    if target is not None:
        tag = _check_platform(target)
    elif ask is not None:
        tag = _ask("Station platform (" + ", ".join(PLATFORM_ALIASES) + ", or a wheel tag)",
                   default_platform, _check_platform, ask)  # fmt: skip
    else:
        tag = PLATFORM_ALIASES[default_platform]
    if python_version is not None:
        version = _check_python(python_version)
    elif ask is not None:
        version = _ask("Station Python version", default_python, _check_python, ask)
    else:
        version = default_python
    note = None
    if ask is None and (target is None or python_version is None):
        note = (
            f"station target {tag}, Python {version} (a guess from this machine): pass --target "
            "and --python-version, or edit .procvision_env.json, for the station's own"
        )
    return station_target(tag, version), note
