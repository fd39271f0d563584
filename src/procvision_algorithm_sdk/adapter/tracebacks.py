"""Tracebacks of algorithm exceptions cut to the algorithm's own frames.

An exception raised in `execute` carries the adapter's frames above the user's and, when it
comes from numpy or another library, that library's frames below. A developer needs the frames
between the first and the last of their own, ending at their own line.
"""

from __future__ import annotations

import sysconfig
import traceback
from functools import lru_cache
from pathlib import Path

__all__ = ["is_library_file", "user_location", "user_traceback"]

_SDK_DIR = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=1)
def _library_dirs() -> tuple[str, ...]:
    """The interpreter's stdlib and site-packages dirs, and this SDK (all "not the user's")."""
    paths = sysconfig.get_paths()
    dirs = {str(_SDK_DIR)}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        value = paths.get(key)
        if value:
            dirs.add(str(Path(value).resolve()))
    return tuple(sorted(d.rstrip("/\\") + "/" for d in dirs))


@lru_cache(maxsize=512)
def is_library_file(filename: str) -> bool:
    """Whether a frame's file belongs to Python, an installed library or this SDK."""
    if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return True
    try:
        resolved = str(Path(filename).resolve()).replace("\\", "/")
    except (OSError, ValueError):
        return False
    return any(resolved.startswith(d.replace("\\", "/")) for d in _library_dirs())


def _trim(stack: traceback.StackSummary) -> traceback.StackSummary:
    """Frames from the first to the last user frame; all of them when none is the user's."""
    user = [i for i, frame in enumerate(stack) if not is_library_file(frame.filename)]
    if not user:
        return stack
    return traceback.StackSummary.from_list(list(stack)[user[0] : user[-1] + 1])


def user_traceback(exc: BaseException) -> str:
    """The formatted traceback of `exc` (and its chain), each stack cut to the user's frames."""
    head = traceback.TracebackException.from_exception(exc)
    seen: set[int] = set()
    todo = [head]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.stack = _trim(current.stack)
        todo.extend(t for t in (current.__cause__, current.__context__) if t is not None)
    return "".join(head.format())


def user_location(exc: BaseException) -> str | None:
    """`file:line` of the innermost user frame of `exc`, or None when it has none."""
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        if not is_library_file(frame.filename):
            return f"{frame.filename}:{frame.lineno}"
    return None
