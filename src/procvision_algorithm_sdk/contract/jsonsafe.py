"""JSON-serialisability: find_unjsonable (1008 problems), to_jsonable (deep conversion)."""

from __future__ import annotations

import math

from procvision_algorithm_sdk.errors import (
    INVALID_RESULT,
)

from .problem import (
    Problem,
    _as_list,
    _child,
    _loaded_numpy,
    _never_raises,
    _numpy_hint,
    _show,
    _type_name,
)

# Deeper data is refused rather than risking RecursionError in a json encoder.
__all__ = [
    "MAX_NESTING_DEPTH",
    "find_unjsonable",
    "to_jsonable",
]

MAX_NESTING_DEPTH = 100


def _leaf_problems(value: object, label: str, problems: list[Problem]) -> bool:
    """Report `value` when it is not a container; True when it was one of those leaves."""
    hint = _numpy_hint(value, label)
    if hint is not None:
        problems.append(Problem(label, INVALID_RESULT, hint))
        return True
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, int):
        try:
            repr(value)
        except ValueError:
            problems.append(
                Problem(label, INVALID_RESULT, f"the integer at {label} is too large for JSON")
            )
        return True
    if isinstance(value, float):
        if not math.isfinite(value):
            problems.append(
                Problem(
                    label,
                    INVALID_RESULT,
                    f"{value!r} at {label} is not valid JSON: use null or a finite number",
                )
            )
        return True
    np = _loaded_numpy()
    if np is not None and isinstance(value, np.ndarray):
        problems.append(
            Problem(
                label,
                INVALID_RESULT,
                f"numpy.ndarray (shape {tuple(value.shape)}, dtype {value.dtype}) at {label}: "
                "convert with .tolist() or leave it out",
            )
        )
        return True
    if isinstance(value, (bytes, bytearray, memoryview)):
        problems.append(
            Problem(
                label,
                INVALID_RESULT,
                f"{_type_name(value)} at {label} is not JSON: encode it into a str "
                "(for example base64) or leave it out",
            )
        )
        return True
    if isinstance(value, (set, frozenset)):
        problems.append(
            Problem(label, INVALID_RESULT, f"a {_type_name(value)} at {label}: use a list")
        )
        return True
    if not isinstance(value, (dict, list, tuple)):
        problems.append(
            Problem(
                label,
                INVALID_RESULT,
                f"an object of type {_type_name(value)} at {label} is not JSON-serialisable",
            )
        )
        return True
    return False


def _walk_json(
    value: object,
    where: str,
    problems: list[Problem],
    visiting: set[int],
    done: set[int],
    depth: int,
) -> None:
    """Append a 1008 problem for every leaf of `value` that plain JSON cannot carry."""
    label = where or "result"
    np = _loaded_numpy()
    if np is not None and isinstance(value, np.floating) and not np.isfinite(value):
        value = float(value)  # converting would not help: report it as the NaN it is
    if _leaf_problems(value, label, problems) or not isinstance(value, (dict, list, tuple)):
        return  # a leaf (reported when it is not JSON); only containers are walked
    ident = id(value)
    if ident in visiting:
        problems.append(
            Problem(label, INVALID_RESULT, f"the value at {label} contains itself (a cycle)")
        )
        return
    if ident in done:
        return  # a shared sub-structure: its problems were reported at its first path
    if depth >= MAX_NESTING_DEPTH:
        problems.append(
            Problem(
                label,
                INVALID_RESULT,
                f"the value at {label} is nested deeper than {MAX_NESTING_DEPTH} levels",
            )
        )
        return
    visiting.add(ident)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                problems.append(
                    Problem(
                        label,
                        INVALID_RESULT,
                        f"the key {_show(key)} ({_type_name(key)}) at {label} is not a str: "
                        "JSON object keys must be strings",
                    )
                )
                continue
            _walk_json(item, _child(where, key), problems, visiting, done, depth + 1)
    else:
        for index, item in enumerate(value):
            _walk_json(item, _child(where, index), problems, visiting, done, depth + 1)
    visiting.discard(ident)
    done.add(ident)


# Bounds of the fast path below; anything beyond them takes the full walk.
_PLAIN_INT_LIMIT = 1 << 1000  # far below the smallest int-to-str digit limit CPython allows
_PLAIN_NODE_BUDGET = 4096


def _plain_scalar(item: object) -> bool:
    """A leaf the walk would accept; checked inline so leaves never go through the stack."""
    kind = type(item)
    if item is None or kind is str or kind is bool:
        return True
    if kind is int:
        return -_PLAIN_INT_LIMIT < item < _PLAIN_INT_LIMIT  # type: ignore[operator]
    return kind is float and math.isfinite(item)  # type: ignore[arg-type]


def _plainly_json(value: object) -> bool:
    """True only when the full walk would certainly find nothing; False means "walk it".

    Accepts exact builtin types only (no subclasses, no numpy), finite floats, ints well within
    every digit limit, str keys, containers shallower than MAX_NESTING_DEPTH, and at most
    _PLAIN_NODE_BUDGET children in all (so cycles and huge shared structures fall through to
    the walk, which reports them). It builds no paths, which is what makes it cheap.
    """
    stack: list[tuple[object, int]] = [(value, 0)]
    budget = _PLAIN_NODE_BUDGET
    while stack:
        item, depth = stack.pop()
        if item is None or type(item) is str or type(item) is bool:
            continue
        if type(item) is int:
            if -_PLAIN_INT_LIMIT < item < _PLAIN_INT_LIMIT:
                continue
            return False
        if type(item) is float:
            if math.isfinite(item):
                continue
            return False
        if type(item) is dict:
            if depth >= MAX_NESTING_DEPTH:
                return False
            budget -= len(item)
            if budget < 0:
                return False
            for key, child in item.items():
                if type(key) is not str:
                    return False
                if not _plain_scalar(child):
                    stack.append((child, depth + 1))
            continue
        if type(item) is list or type(item) is tuple:
            if depth >= MAX_NESTING_DEPTH:
                return False
            budget -= len(item)
            if budget < 0:
                return False
            stack.extend((child, depth + 1) for child in item if not _plain_scalar(child))
            continue
        return False
    return True


@_never_raises("result", INVALID_RESULT, _as_list)
def find_unjsonable(value: object, where: str) -> list[Problem]:
    """Return a 1008 problem for every leaf that is not plain JSON (numpy, ndarray, bytes, ...)."""
    if _plainly_json(value):
        return []  # the common small valid result: no walk, no paths built
    problems: list[Problem] = []
    _walk_json(value, where if isinstance(where, str) else "", problems, set(), set(), 0)
    return problems


def to_jsonable(value: object) -> object:
    """Deep-convert numpy scalars and tuples to plain JSON values; TypeError names a bad path."""
    return _convert(value, "", set(), 0)


def _convert(value: object, where: str, visiting: set[int], depth: int) -> object:
    label = where or "value"
    np = _loaded_numpy()
    if np is not None:
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.floating):
            value = float(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        try:
            repr(value)
        except ValueError:
            raise TypeError(f"the integer at {label} is too large for JSON") from None
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{value!r} at {label} is not valid JSON")
        return float(value)
    if not isinstance(value, (dict, list, tuple)):
        raise TypeError(
            f"an object of type {_type_name(value)} at {label} is not JSON-serialisable"
        )
    ident = id(value)
    if ident in visiting:
        raise TypeError(f"the value at {label} contains itself (a cycle)")
    if depth >= MAX_NESTING_DEPTH:
        raise TypeError(f"the value at {label} is nested deeper than {MAX_NESTING_DEPTH} levels")
    visiting.add(ident)
    try:
        if isinstance(value, dict):
            out: dict[str, object] = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise TypeError(
                        f"the key {_show(key)} at {label} is not a str: JSON keys must be strings"
                    )
                out[str(key)] = _convert(item, _child(where, key), visiting, depth + 1)
            return out
        return [
            _convert(item, _child(where, index), visiting, depth + 1)
            for index, item in enumerate(value)
        ]
    finally:
        visiting.discard(ident)
