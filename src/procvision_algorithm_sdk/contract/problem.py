"""Problem (one broken rule) and the helpers every check shares: paths, renderings, guards."""

from __future__ import annotations

import functools
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard, TypeVar

__all__ = [
    "Problem",
]

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Problem:
    """One broken rule: where it is, its error code, and a sentence a person understands."""

    where: str
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        """Return the problem as a plain JSON-ready dict."""
        return {"where": self.where, "code": self.code, "message": self.message}


# ---------------------------------------------------------------------------------------------
# small helpers


def _child(where: str, key: object) -> str:
    """Return the path of `key` under `where` ("a.b", "a[3]", 'a["odd key"]')."""
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{where}[{key}]"
    text = key if isinstance(key, str) else _show(key)
    if _PLAIN_KEY.fullmatch(text):
        return f"{where}.{text}" if where else text
    return f"{where}[{json.dumps(text, ensure_ascii=False)}]"


def _show(value: object, limit: int = 40) -> str:
    """Return a short, safe rendering of an arbitrary value for a message (never raises)."""
    if value is None or isinstance(value, (bool, float)):
        return repr(value)
    if isinstance(value, int):
        # repr() of an int with thousands of digits raises ValueError on Python >= 3.11.
        if value.bit_length() > 200:
            return f"an integer of {value.bit_length()} bits"
        return repr(value)
    if isinstance(value, str):
        text = value if len(value) <= limit else value[:limit] + "..."
        return repr(text)
    return f"a {_type_name(value)}"


def _type_name(value: object) -> str:
    """Return a readable type name, with the module for numpy and other non-builtin types."""
    cls = type(value)
    module = getattr(cls, "__module__", "") or ""
    if module == "builtins":
        return cls.__qualname__
    return f"{module.split('.')[0]}.{cls.__qualname__}"


def _is_int(value: object) -> TypeGuard[int]:
    """True for a Python int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _loaded_numpy() -> Any:
    """numpy if something imported it, else None.

    No value can be a numpy object before numpy is imported, so the checks ask this instead of
    importing numpy themselves: the command lines that check manifests start without it.
    """
    return sys.modules.get("numpy")


def _is_number(value: object) -> TypeGuard[int | float]:
    """True for a finite Python int or float (not a bool, not a numpy scalar)."""
    if _is_int(value):
        return True
    if not isinstance(value, float):
        return False
    np = _loaded_numpy()
    return (np is None or not isinstance(value, np.floating)) and math.isfinite(value)


def _non_empty_str(value: object) -> TypeGuard[str]:
    """True for a str with at least one non-whitespace character."""
    return isinstance(value, str) and value.strip() != ""


def _numpy_hint(value: object, where: str) -> str | None:
    """Return the 1008 message for a numpy scalar, or None if `value` is not one."""
    if isinstance(value, (str, bytes)):
        return None  # numpy.str_ is a str and serialises; numpy.bytes_ is reported as bytes
    np = _loaded_numpy()
    if np is None:
        return None
    if isinstance(value, np.bool_):
        conv = "bool()"
    elif isinstance(value, np.integer):
        conv = "int()"
    elif isinstance(value, np.floating):
        conv = "float()"
    elif isinstance(value, np.generic):
        conv = ".item()"
    else:
        return None
    return f"{_type_name(value)} at {where}: convert with {conv}"


_F = TypeVar("_F", bound=Callable[..., Any])


def _never_raises(root: str, code: str, fallback: Callable[[Problem], Any]) -> Callable[[_F], _F]:
    """Last-resort guard: an input hostile enough to raise inside a check becomes a problem."""

    def wrap(func: _F) -> _F:
        @functools.wraps(func)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except Exception as exc:  # a check must never raise on any input
                problem = Problem(
                    root, code, f"the value could not be checked ({type(exc).__name__})"
                )
                return fallback(problem)

        return guarded  # type: ignore[return-value]

    return wrap


def _as_list(problem: Problem) -> list[Problem]:
    return [problem]


def _dedupe(problems: list[Problem]) -> list[Problem]:
    """Drop exact duplicates (two checks may report the same numpy leaf), keeping order."""
    seen: set[Problem] = set()
    out = []
    for problem in problems:
        if problem not in seen:
            seen.add(problem)
            out.append(problem)
    return out


def _image_size(value: object) -> int | None:
    """Return a usable image dimension, or None when it is unknown or nonsensical."""
    return value if _is_int(value) and value > 0 else None
