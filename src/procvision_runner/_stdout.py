"""Console output shared by both CLIs: one JSON style, and quiet on a closed pipe."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["dump_json", "quiet_on_closed_pipe"]

# 128 + SIGPIPE: what a shell reports for a program that stopped on a closed pipe
CLOSED_PIPE_EXIT = 141


def dump_json(value: Any, *, indent: int | None = 2) -> str:
    """JSON as both CLIs print it: UTF-8 text (not \\u escapes), keys in their order."""
    return json.dumps(value, ensure_ascii=False, indent=indent, default=str)


def quiet_on_closed_pipe(main: Callable[[], int]) -> int:
    """Run `main`; when the reader closed stdout (`| head`), exit quietly instead of a traceback."""
    try:
        code = main()
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at devnull so that flush is silent too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
        return CLOSED_PIPE_EXIT
