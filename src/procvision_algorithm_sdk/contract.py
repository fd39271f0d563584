"""Pure contract checks (contract sections 3 and 5), shared by validate, the adapter and the Runner.

Every check returns every problem it finds as a list of `Problem` and never raises, whatever it
is given: None, wrong types, nested garbage, cycles, huge ints, NaN, numpy objects.
"""

from __future__ import annotations

import functools
import json
import keyword
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard, TypeVar

import numpy as np

from procvision_algorithm_sdk.errors import (
    COORDINATE_INVALID,
    INVALID_PARAMS,
    INVALID_RESULT,
    MANIFEST_MISSING,
)
from procvision_algorithm_sdk.generation import APIS, EXECUTE_ONLY, manifest_api

__all__ = [
    "DEFAULT_MAX_DEFECTS",
    "MAX_ERROR_MESSAGE_CHARS",
    "MAX_NESTING_DEPTH",
    "MAX_NG_REASON_CHARS",
    "MAX_POSITION_RECTS",
    "PARAM_TYPES",
    "Problem",
    "check_execute_result",
    "check_info",
    "check_manifest",
    "check_param_specs",
    "check_pre_execute_result",
    "check_rect",
    "find_step",
    "find_unjsonable",
    "is_safe_name",
    "to_jsonable",
    "validate_user_params",
]

DEFAULT_MAX_DEFECTS = 20
MAX_POSITION_RECTS = 20
# Both limits are exclusive: the contract says "< 50 chars" and "< 100 chars".
MAX_NG_REASON_CHARS = 50
MAX_ERROR_MESSAGE_CHARS = 100
# Deeper data is refused rather than risking RecursionError in a json encoder.
MAX_NESTING_DEPTH = 100
PARAM_TYPES = ("int", "float", "enum", "bool", "string", "rect")
RECT_FIELDS = ("x", "y", "width", "height")

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DRIVE = re.compile(r"[A-Za-z]:")


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


def _is_number(value: object) -> TypeGuard[int | float]:
    """True for a finite Python int or float (not a bool, not a numpy scalar)."""
    if _is_int(value):
        return True
    return isinstance(value, float) and not isinstance(value, np.floating) and math.isfinite(value)


def _non_empty_str(value: object) -> TypeGuard[str]:
    """True for a str with at least one non-whitespace character."""
    return isinstance(value, str) and value.strip() != ""


def _numpy_hint(value: object, where: str) -> str | None:
    """Return the 1008 message for a numpy scalar, or None if `value` is not one."""
    if isinstance(value, (str, bytes)):
        return None  # numpy.str_ is a str and serialises; numpy.bytes_ is reported as bytes
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


# ---------------------------------------------------------------------------------------------
# JSON-serialisability


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
    if isinstance(value, np.floating) and not np.isfinite(value):
        value = float(value)  # converting would not help: report it as the NaN it is
    hint = _numpy_hint(value, label)
    if hint is not None:
        problems.append(Problem(label, INVALID_RESULT, hint))
        return
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        try:
            repr(value)
        except ValueError:
            problems.append(
                Problem(label, INVALID_RESULT, f"the integer at {label} is too large for JSON")
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            problems.append(
                Problem(
                    label,
                    INVALID_RESULT,
                    f"{value!r} at {label} is not valid JSON: use null or a finite number",
                )
            )
        return
    if isinstance(value, np.ndarray):
        problems.append(
            Problem(
                label,
                INVALID_RESULT,
                f"numpy.ndarray (shape {tuple(value.shape)}, dtype {value.dtype}) at {label}: "
                "convert with .tolist() or leave it out",
            )
        )
        return
    if isinstance(value, (bytes, bytearray, memoryview)):
        problems.append(
            Problem(
                label,
                INVALID_RESULT,
                f"{_type_name(value)} at {label} is not JSON: encode it into a str "
                "(for example base64) or leave it out",
            )
        )
        return
    if isinstance(value, (set, frozenset)):
        problems.append(
            Problem(label, INVALID_RESULT, f"a {_type_name(value)} at {label}: use a list")
        )
        return
    if not isinstance(value, (dict, list, tuple)):
        problems.append(
            Problem(
                label,
                INVALID_RESULT,
                f"an object of type {_type_name(value)} at {label} is not JSON-serialisable",
            )
        )
        return
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
                stack.append((child, depth + 1))
            continue
        if type(item) is list or type(item) is tuple:
            if depth >= MAX_NESTING_DEPTH:
                return False
            budget -= len(item)
            if budget < 0:
                return False
            stack.extend((child, depth + 1) for child in item)
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


# ---------------------------------------------------------------------------------------------
# rects


def _rect_geometry(
    rect: dict[Any, Any],
    where: str,
    image_width: int | None,
    image_height: int | None,
    code_malformed: str,
) -> tuple[list[Problem], bool]:
    """Check x/y/width/height; return the problems and whether the fields were well-formed."""
    problems: list[Problem] = []
    well_formed = True
    for name in RECT_FIELDS:
        at = _child(where, name)
        if name not in rect:
            problems.append(Problem(at, code_malformed, f"the rect at {where} has no {name}"))
            well_formed = False
            continue
        value = rect[name]
        hint = _numpy_hint(value, at)
        if hint is not None:
            problems.append(Problem(at, INVALID_RESULT, hint))
            well_formed = False
        elif not _is_int(value):
            problems.append(
                Problem(
                    at,
                    code_malformed,
                    f"{at} must be an integer number of pixels, not {_show(value)}",
                )
            )
            well_formed = False
        elif name in ("width", "height") and value <= 0:
            problems.append(Problem(at, code_malformed, f"{at} must be > 0, got {_show(value)}"))
            well_formed = False
    if not well_formed:
        return problems, False
    x, y, w, h = (rect[name] for name in RECT_FIELDS)
    outside = []
    if x < 0:
        outside.append(f"x {_show(x)} < 0")
    if y < 0:
        outside.append(f"y {_show(y)} < 0")
    if image_width is not None and x + w > image_width:
        outside.append(f"x + width = {_show(x + w)} > image width {image_width}")
    if image_height is not None and y + h > image_height:
        outside.append(f"y + height = {_show(y + h)} > image height {image_height}")
    if outside:
        problems.append(
            Problem(
                where,
                COORDINATE_INVALID,
                f"the rect at {where} is outside the image: " + "; ".join(outside),
            )
        )
    return problems, True


@_never_raises("rect", COORDINATE_INVALID, _as_list)
def check_rect(
    rect: object,
    where: str,
    image_width: int | None = None,
    image_height: int | None = None,
) -> list[Problem]:
    """Check one returned rect: integer geometry (1007), label/score types (1008)."""
    where = where if isinstance(where, str) and where else "rect"
    if not isinstance(rect, dict):
        return [
            Problem(
                where,
                COORDINATE_INVALID,
                f"{where} must be an object {{x, y, width, height}}, not {_show(rect)}",
            )
        ]
    problems, _ = _rect_geometry(
        rect, where, _image_size(image_width), _image_size(image_height), COORDINATE_INVALID
    )
    # null label/score means "not given", as everywhere else in the contract
    if rect.get("label") is not None and not isinstance(rect["label"], str):
        at = _child(where, "label")
        problems.append(
            Problem(at, INVALID_RESULT, f"{at} must be a str, not {_show(rect['label'])}")
        )
    if rect.get("score") is not None:
        score = rect["score"]
        at = _child(where, "score")
        hint = _numpy_hint(score, at)
        if hint is not None:
            problems.append(Problem(at, INVALID_RESULT, hint))
        elif not _is_number(score) or not 0 <= score <= 1:
            problems.append(
                Problem(at, INVALID_RESULT, f"{at} must be a number in [0, 1], not {_show(score)}")
            )
    return problems


def _check_rect_list(
    value: object,
    where: str,
    limit: int | None,
    image_width: int | None,
    image_height: int | None,
) -> list[Problem]:
    if not isinstance(value, list):
        return [
            Problem(where, INVALID_RESULT, f"{where} must be a list of rects, not {_show(value)}")
        ]
    problems = []
    if limit is not None and len(value) > limit:
        problems.append(
            Problem(
                where,
                INVALID_RESULT,
                f"{where} has {len(value)} rects; at most {limit} are allowed",
            )
        )
    for index, rect in enumerate(value):
        problems.extend(check_rect(rect, _child(where, index), image_width, image_height))
    return problems


# ---------------------------------------------------------------------------------------------
# results


def _check_envelope(result: dict[Any, Any], execute: bool) -> tuple[list[Problem], str | None]:
    """Check status/message/error_code/data shared by both result kinds; return the status."""
    problems: list[Problem] = []
    status = result.get("status")
    if "status" not in result:
        problems.append(
            Problem("status", INVALID_RESULT, 'the result has no status ("OK" or "ERROR")')
        )
        status = None
    elif isinstance(status, str) and status == "NG":
        problems.append(
            Problem(
                "status",
                INVALID_RESULT,
                'top-level status "NG" is not allowed: status is the call outcome ("OK" or '
                '"ERROR"); return status "OK" and put "NG" in data.result_status',
            )
        )
        status = None
    elif not isinstance(status, str) or status not in ("OK", "ERROR"):
        problems.append(
            Problem(
                "status",
                INVALID_RESULT,
                f'status must be exactly "OK" or "ERROR", not {_show(status)}',
            )
        )
        status = None

    message = result.get("message")
    if message is not None and not isinstance(message, str):
        problems.append(
            Problem("message", INVALID_RESULT, f"message must be a str, not {_show(message)}")
        )
    elif status == "ERROR":
        if not _non_empty_str(message):
            problems.append(
                Problem("message", INVALID_RESULT, "an ERROR result needs a non-empty message")
            )
        elif execute and isinstance(message, str) and len(message) >= MAX_ERROR_MESSAGE_CHARS:
            problems.append(
                Problem(
                    "message",
                    INVALID_RESULT,
                    f"an execute ERROR message must be shorter than {MAX_ERROR_MESSAGE_CHARS} "
                    f"characters; it has {len(message)}",
                )
            )

    code = result.get("error_code")
    if code is not None and not (_non_empty_str(code) or _is_int(code)):
        problems.append(
            Problem(
                "error_code",
                INVALID_RESULT,
                f'error_code must be a non-empty str (like "1003") or an int, not {_show(code)}',
            )
        )

    data = result.get("data")
    if data is not None and not isinstance(data, dict):
        problems.append(
            Problem("data", INVALID_RESULT, f"data must be an object, not {_show(data)}")
        )
    return problems, status


@_never_raises("result", INVALID_RESULT, _as_list)
def check_pre_execute_result(
    result: object,
    image_width: int | None = None,
    image_height: int | None = None,
) -> list[Problem]:
    """Check a pre_execute result against contract section 3."""
    if not isinstance(result, dict):
        return [
            Problem(
                "result", INVALID_RESULT, f"pre_execute must return a dict, not {_show(result)}"
            )
        ]
    problems, _status = _check_envelope(result, execute=False)
    data = result.get("data")
    if isinstance(data, dict):
        for forbidden in ("result_status", "defect_rects", "ng_reason"):
            if forbidden in data:
                at = _child("data", forbidden)
                problems.append(
                    Problem(
                        at,
                        INVALID_RESULT,
                        f"pre_execute must not return {at}: only execute gives the verdict",
                    )
                )
        if data.get("calibration_rects") is not None:
            problems.extend(
                _check_rect_list(
                    data["calibration_rects"],
                    "data.calibration_rects",
                    None,
                    _image_size(image_width),
                    _image_size(image_height),
                )
            )
    debug = result.get("debug")
    if debug is not None and not isinstance(debug, dict):
        problems.append(
            Problem("debug", INVALID_RESULT, f"debug must be an object, not {_show(debug)}")
        )
    problems.extend(find_unjsonable(result, ""))
    return _dedupe(problems)


@_never_raises("result", INVALID_RESULT, _as_list)
def check_execute_result(
    result: object,
    image_width: int | None = None,
    image_height: int | None = None,
    max_defects: int = DEFAULT_MAX_DEFECTS,
) -> list[Problem]:
    """Check an execute result against contract section 3 (rect bounds when the size is known)."""
    if not isinstance(result, dict):
        return [
            Problem("result", INVALID_RESULT, f"execute must return a dict, not {_show(result)}")
        ]
    width, height = _image_size(image_width), _image_size(image_height)
    limit = max_defects if _is_int(max_defects) and max_defects >= 0 else DEFAULT_MAX_DEFECTS
    problems, status = _check_envelope(result, execute=True)
    data = result.get("data")
    required = status == "OK"
    if data is None and required:
        problems.append(
            Problem("data", INVALID_RESULT, "an OK execute result needs data with result_status")
        )
    if isinstance(data, dict):
        problems.extend(_check_execute_data(data, required, width, height, limit))
    problems.extend(find_unjsonable(result, ""))
    return _dedupe(problems)


def _check_execute_data(
    data: dict[Any, Any],
    required: bool,
    width: int | None,
    height: int | None,
    limit: int,
) -> list[Problem]:
    """Check the verdict fields; `required` is False when the status is not OK."""
    problems: list[Problem] = []
    verdict = data.get("result_status")
    if "result_status" not in data:
        if required:
            problems.append(
                Problem(
                    "data.result_status",
                    INVALID_RESULT,
                    'an OK execute result needs data.result_status ("OK" or "NG")',
                )
            )
    elif not isinstance(verdict, str) or verdict not in ("OK", "NG"):
        problems.append(
            Problem(
                "data.result_status",
                INVALID_RESULT,
                f'data.result_status must be "OK" or "NG", not {_show(verdict)}',
            )
        )
        verdict = None
    is_ng = verdict == "NG"

    if "ng_reason" in data:
        reason = data["ng_reason"]
        if not _non_empty_str(reason):
            problems.append(
                Problem(
                    "data.ng_reason",
                    INVALID_RESULT,
                    f"data.ng_reason must be a non-empty str, not {_show(reason)}",
                )
            )
        elif len(reason) >= MAX_NG_REASON_CHARS:
            problems.append(
                Problem(
                    "data.ng_reason",
                    INVALID_RESULT,
                    f"data.ng_reason must be shorter than {MAX_NG_REASON_CHARS} characters; "
                    f"it has {len(reason)}",
                )
            )
    elif is_ng:
        problems.append(
            Problem("data.ng_reason", INVALID_RESULT, "an NG verdict needs data.ng_reason")
        )

    if "defect_rects" in data:
        problems.extend(
            _check_rect_list(data["defect_rects"], "data.defect_rects", limit, width, height)
        )
    elif is_ng:
        problems.append(
            Problem(
                "data.defect_rects",
                INVALID_RESULT,
                "an NG verdict needs data.defect_rects (a list of rects)",
            )
        )

    if data.get("position_rects") is not None:
        problems.extend(
            _check_rect_list(
                data["position_rects"], "data.position_rects", MAX_POSITION_RECTS, width, height
            )
        )
    debug = data.get("debug")
    if debug is not None and not isinstance(debug, dict):
        problems.append(
            Problem(
                "data.debug", INVALID_RESULT, f"data.debug must be an object, not {_show(debug)}"
            )
        )
    return problems


# ---------------------------------------------------------------------------------------------
# parameter specs and user_params


def _spec_code(where: str) -> str:
    """Spec problems are 2002 in a manifest, 1006 anywhere else (get_info)."""
    return MANIFEST_MISSING if where.startswith("manifest") else INVALID_PARAMS


def _parse_rect_string(text: str) -> dict[str, int] | None:
    """Parse "x,y,w,h" into a rect dict (None if it is not four integers)."""
    parts = text.split(",")
    if len(parts) != 4:
        return None
    values = []
    for part in parts:
        part = part.strip()
        if not re.fullmatch(r"[+-]?[0-9]{1,18}", part):
            return None
        values.append(int(part))
    return dict(zip(RECT_FIELDS, values, strict=True))


def _compiled(pattern: object) -> re.Pattern[str] | None:
    if not isinstance(pattern, str):
        return None
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError):
        return None


def _check_value(
    spec: dict[Any, Any],
    value: object,
    where: str,
    code: str,
    image_width: int | None = None,
    image_height: int | None = None,
) -> tuple[object, list[Problem]]:
    """Check one value against a well-typed spec; return the (normalised) value and problems."""
    kind = spec.get("type")
    if kind == "int" or kind == "float":
        ok = _is_int(value) if kind == "int" else _is_number(value)
        if not ok:
            wanted = "an integer" if kind == "int" else "a finite number"
            return value, [Problem(where, code, f"{where} must be {wanted}, not {_show(value)}")]
        low, high = spec.get("min"), spec.get("max")
        assert isinstance(value, (int, float))
        if _is_number(low) and value < low:
            return value, [
                Problem(where, code, f"{where} is {_show(value)}, below the minimum {low}")
            ]
        if _is_number(high) and value > high:
            return value, [
                Problem(where, code, f"{where} is {_show(value)}, above the maximum {high}")
            ]
        return value, []
    if kind == "bool":
        if not isinstance(value, bool):
            return value, [
                Problem(where, code, f"{where} must be true or false, not {_show(value)}")
            ]
        return value, []
    if kind == "enum":
        choices = spec.get("choices")
        if isinstance(choices, list) and not any(_same(value, choice) for choice in choices):
            shown = ", ".join(_show(choice) for choice in choices[:10])
            return value, [Problem(where, code, f"{where} is {_show(value)}, not one of: {shown}")]
        return value, []
    if kind == "string":
        if not isinstance(value, str):
            return value, [Problem(where, code, f"{where} must be a str, not {_show(value)}")]
        low, high = spec.get("min_length"), spec.get("max_length")
        if _is_int(low) and len(value) < low:
            return value, [
                Problem(where, code, f"{where} has {len(value)} characters, fewer than {low}")
            ]
        if _is_int(high) and len(value) > high:
            return value, [
                Problem(where, code, f"{where} has {len(value)} characters, more than {high}")
            ]
        pattern = _compiled(spec.get("pattern"))
        if pattern is not None and pattern.search(value) is None:
            return value, [
                Problem(
                    where,
                    code,
                    f"{where} {_show(value)} does not match the pattern {pattern.pattern!r}",
                )
            ]
        return value, []
    if kind == "rect":
        rect: object = value
        if isinstance(value, str):
            rect = _parse_rect_string(value)
            if rect is None:
                return value, [
                    Problem(
                        where,
                        code,
                        f'{where} must be "x,y,w,h" (four integers), not {_show(value)}',
                    )
                ]
        if not isinstance(rect, dict):
            return value, [
                Problem(
                    where,
                    code,
                    f"{where} must be a rect {{x, y, width, height}} or "
                    f'"x,y,w,h", not {_show(value)}',
                )
            ]
        problems, _ = _rect_geometry(rect, where, image_width, image_height, code)
        # A malformed rect is an invalid parameter; only one outside the image is 1007.
        problems = [
            p if p.code == COORDINATE_INVALID else Problem(p.where, code, p.message)
            for p in problems
        ]
        return (dict(rect) if isinstance(rect, dict) else rect), problems
    return value, []


def _same(value: object, choice: object) -> bool:
    """Enum membership without True == 1 confusions."""
    if isinstance(value, bool) and isinstance(choice, bool):
        return value is choice
    if isinstance(value, str) and isinstance(choice, str):
        return value == choice
    if _is_number(value) and _is_number(choice):
        return bool(value == choice)
    return False


def _check_one_spec(
    spec: object, where: str, code: str, seen: dict[str, int], index: int
) -> list[Problem]:
    if not isinstance(spec, dict):
        return [Problem(where, code, f"a parameter spec must be an object, not {_show(spec)}")]
    problems: list[Problem] = []
    key = spec.get("key")
    if not _non_empty_str(key):
        problems.append(
            Problem(
                _child(where, "key"),
                code,
                f"the parameter key must be a non-empty str, not {_show(key)}",
            )
        )
    elif key in seen:
        problems.append(
            Problem(
                _child(where, "key"),
                code,
                f"the parameter key {_show(key)} is used twice (also at index {seen[key]})",
            )
        )
    else:
        seen[key] = index
    kind = spec.get("type")
    if not isinstance(kind, str) or kind not in PARAM_TYPES:
        problems.append(
            Problem(
                _child(where, "type"),
                code,
                f"unknown parameter type {_show(kind)}; use one of {', '.join(PARAM_TYPES)}",
            )
        )
        kind = None
    for field in ("description", "unit"):
        if spec.get(field) is not None and not isinstance(spec[field], str):
            at = _child(where, field)
            problems.append(Problem(at, code, f"{at} must be a str, not {_show(spec[field])}"))
    if "required" in spec and not isinstance(spec["required"], bool):
        at = _child(where, "required")
        problems.append(
            Problem(at, code, f"{at} must be true or false, not {_show(spec['required'])}")
        )

    spec_ok = True
    if kind in ("int", "float"):
        number = _is_int if kind == "int" else _is_number
        for field in ("min", "max"):
            if spec.get(field) is not None and not number(spec[field]):
                at = _child(where, field)
                problems.append(
                    Problem(at, code, f"{at} must be a {kind}, not {_show(spec[field])}")
                )
                spec_ok = False
        low, high = spec.get("min"), spec.get("max")
        if spec_ok and _is_number(low) and _is_number(high) and low > high:
            problems.append(Problem(where, code, f"{where} has min {low} > max {high}"))
            spec_ok = False
    elif kind == "enum":
        choices = spec.get("choices")
        at = _child(where, "choices")
        if not isinstance(choices, list) or not choices:
            problems.append(
                Problem(at, code, f"{at} must be a non-empty list, not {_show(choices)}")
            )
            spec_ok = False
        else:
            for index, choice in enumerate(choices):
                if not (isinstance(choice, (str, bool)) or _is_number(choice)):
                    problems.append(
                        Problem(
                            _child(at, index),
                            code,
                            f"an enum choice must be a str, number or bool, not {_show(choice)}",
                        )
                    )
                    spec_ok = False
                elif any(_same(choice, earlier) for earlier in choices[:index]):
                    problems.append(
                        Problem(
                            _child(at, index), code, f"the choice {_show(choice)} is listed twice"
                        )
                    )
    elif kind == "string":
        for field in ("min_length", "max_length"):
            value = spec.get(field)
            if value is not None and not (_is_int(value) and value >= 0):
                at = _child(where, field)
                problems.append(
                    Problem(at, code, f"{at} must be an integer >= 0, not {_show(value)}")
                )
                spec_ok = False
        low, high = spec.get("min_length"), spec.get("max_length")
        if spec_ok and _is_int(low) and _is_int(high) and low > high:
            problems.append(
                Problem(where, code, f"{where} has min_length {low} > max_length {high}")
            )
            spec_ok = False
        if spec.get("pattern") is not None and _compiled(spec["pattern"]) is None:
            at = _child(where, "pattern")
            problems.append(
                Problem(
                    at,
                    code,
                    f"{at} must be a regular expression that compiles, "
                    f"not {_show(spec['pattern'])}",
                )
            )
            spec_ok = False

    if kind is not None and spec_ok and spec.get("default") is not None:
        at = _child(where, "default")
        _value, default_problems = _check_value(spec, spec["default"], at, code)
        for problem in default_problems:
            problems.append(
                Problem(
                    problem.where, code, f"the default does not satisfy its spec: {problem.message}"
                )
            )
    return problems


@_never_raises("params", INVALID_PARAMS, _as_list)
def check_param_specs(params: object, where: str) -> list[Problem]:
    """Check a step's list of ParamSpec; codes are 2002 under "manifest...", 1006 otherwise."""
    where = where if isinstance(where, str) and where else "params"
    code = _spec_code(where)
    if not isinstance(params, list):
        return [
            Problem(where, code, f"{where} must be a list of parameter specs, not {_show(params)}")
        ]
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for index, spec in enumerate(params):
        problems.extend(_check_one_spec(spec, _child(where, index), code, seen, index))
    return problems


def _usable_spec(spec: object) -> bool:
    return (
        isinstance(spec, dict)
        and _non_empty_str(spec.get("key"))
        and isinstance(spec.get("type"), str)
        and spec.get("type") in PARAM_TYPES
    )


def _validate_user_params(
    param_specs: object,
    user_params: object,
    image_width: int | None = None,
    image_height: int | None = None,
) -> tuple[dict[str, Any], list[Problem]]:
    problems: list[Problem] = []
    width, height = _image_size(image_width), _image_size(image_height)
    if user_params is None:
        given: dict[Any, Any] = {}
    elif isinstance(user_params, dict):
        given = user_params
    else:
        problems.append(
            Problem(
                "user_params",
                INVALID_PARAMS,
                f"user_params must be an object, not {_show(user_params)}",
            )
        )
        given = {}
    if param_specs is None:
        specs: list[Any] = []
    elif isinstance(param_specs, list):
        specs = param_specs
    else:
        problems.append(
            Problem(
                "params",
                INVALID_PARAMS,
                f"the step's parameter schema is not a list: {_show(param_specs)}",
            )
        )
        specs = []

    out: dict[str, Any] = dict(given)
    for spec in specs:
        if not _usable_spec(spec):
            continue  # check_param_specs reports it; nothing to validate against
        key = spec["key"]
        where = _child("user_params", key)
        value = given.get(key)
        if value is None:
            default = spec.get("default")
            if default is not None:
                value, default_problems = _check_value(
                    spec, default, where, INVALID_PARAMS, width, height
                )
                problems.extend(default_problems)
                out[key] = value
            elif spec.get("required") is True:
                problems.append(
                    Problem(
                        where, INVALID_PARAMS, f"the required parameter {_show(key)} is missing"
                    )
                )
            continue
        value, value_problems = _check_value(spec, value, where, INVALID_PARAMS, width, height)
        problems.extend(value_problems)
        out[key] = value
    return out, problems


def _params_fallback(problem: Problem) -> tuple[dict[str, Any], list[Problem]]:
    return {}, [Problem("user_params", INVALID_PARAMS, problem.message)]


@_never_raises("user_params", INVALID_PARAMS, _params_fallback)
def validate_user_params(
    param_specs: object,
    user_params: object,
    image_width: int | None = None,
    image_height: int | None = None,
) -> tuple[dict[str, Any], list[Problem]]:
    """Validate user_params against a step's specs; return them with defaults, and problems."""
    return _validate_user_params(param_specs, user_params, image_width, image_height)


# ---------------------------------------------------------------------------------------------
# get_info and manifest


def _check_steps(steps: object, where: str, code: str) -> list[Problem]:
    """Check a steps list; structure problems get `code`, param specs their own code."""
    if not isinstance(steps, list):
        return [Problem(where, code, f"{where} must be a list of steps, not {_show(steps)}")]
    problems: list[Problem] = []
    indexes: set[int] = set()
    for position, step in enumerate(steps):
        at = _child(where, position)
        if not isinstance(step, dict):
            problems.append(Problem(at, code, f"{at} must be an object {{index, name, params}}"))
            continue
        index = step.get("index")
        if not _is_int(index) or index < 1:
            problems.append(
                Problem(
                    _child(at, "index"),
                    code,
                    f"a step index must be an integer >= 1, not {_show(index)}",
                )
            )
        elif index in indexes:
            problems.append(
                Problem(_child(at, "index"), code, f"the step index {index} is used twice")
            )
        else:
            indexes.add(index)
        if not _non_empty_str(step.get("name")):
            problems.append(
                Problem(
                    _child(at, "name"),
                    code,
                    f"a step name must be a non-empty str, not {_show(step.get('name'))}",
                )
            )
        if step.get("params") is not None:
            problems.extend(check_param_specs(step["params"], _child(at, "params")))
    return problems


def _check_pid_list(pids: object, where: str, code: str, safe: bool) -> list[Problem]:
    if not isinstance(pids, list) or not pids:
        return [
            Problem(
                where, code, f"{where} must be a non-empty list of pid strings, not {_show(pids)}"
            )
        ]
    problems = []
    seen: set[str] = set()
    for index, pid in enumerate(pids):
        at = _child(where, index)
        if not _non_empty_str(pid):
            problems.append(Problem(at, code, f"a pid must be a non-empty str, not {_show(pid)}"))
        elif pid in seen:
            problems.append(Problem(at, code, f"the pid {_show(pid)} is listed twice"))
        elif safe and not is_safe_name(pid):
            problems.append(
                Problem(
                    at,
                    code,
                    f"the pid {_show(pid)} is not a safe name "
                    "(letters, digits, '.', '_', '-'; starts with a letter or digit; <= 64)",
                )
            )
        else:
            seen.add(pid)
    return problems


@_never_raises("info", INVALID_RESULT, _as_list)
def check_info(info: object) -> list[Problem]:
    """Check get_info() output: 1008 for its fields, 1006 for its parameter specs."""
    if not isinstance(info, dict):
        return [Problem("info", INVALID_RESULT, f"get_info must return a dict, not {_show(info)}")]
    problems: list[Problem] = []
    for field in ("name", "version"):
        if not _non_empty_str(info.get(field)):
            at = _child("info", field)
            problems.append(
                Problem(
                    at,
                    INVALID_RESULT,
                    f"{at} must be a non-empty str, not {_show(info.get(field))}",
                )
            )
    if info.get("description") is not None and not isinstance(info["description"], str):
        problems.append(
            Problem("info.description", INVALID_RESULT, "info.description must be a str")
        )
    problems.extend(
        _check_pid_list(
            info.get("supported_pids"), "info.supported_pids", INVALID_RESULT, safe=False
        )
    )
    problems.extend(_check_steps(info.get("steps"), "info.steps", INVALID_RESULT))
    problems.extend(find_unjsonable(info, "info"))
    return _dedupe(problems)


def is_safe_name(s: object) -> bool:
    """True if `s` can be used as one path component of the store (name, version, pid)."""
    return isinstance(s, str) and _SAFE_NAME.fullmatch(s) is not None


def _is_dotted_identifier(text: str) -> bool:
    parts = text.split(".")
    return all(
        part.isascii() and part.isidentifier() and not keyword.iskeyword(part) for part in parts
    )


def _check_relpath(path: object, where: str) -> list[Problem]:
    if not _non_empty_str(path):
        return [
            Problem(
                where,
                MANIFEST_MISSING,
                f"{where} must be a non-empty relative path, not {_show(path)}",
            )
        ]
    assert isinstance(path, str)
    reasons = []
    if path.startswith(("/", "\\")):
        reasons.append("it is absolute")
    if _DRIVE.match(path):
        reasons.append("it starts with a drive letter")
    if any(part == ".." for part in re.split(r"[\\/]", path)):
        reasons.append('it contains ".."')
    if "\x00" in path:
        reasons.append("it contains a NUL character")
    if reasons:
        return [
            Problem(
                where,
                MANIFEST_MISSING,
                f"{where} {_show(path)} must stay inside the package: " + ", ".join(reasons),
            )
        ]
    return []


@_never_raises("manifest", MANIFEST_MISSING, _as_list)
def check_manifest(manifest: object, info: object | None = None) -> list[Problem]:
    """Check manifest.json (code 2002), and its agreement with get_info() when `info` is given."""
    code = MANIFEST_MISSING
    if not isinstance(manifest, dict):
        return [
            Problem("manifest", code, f"manifest.json must hold an object, not {_show(manifest)}")
        ]
    problems: list[Problem] = []
    for field in ("name", "version"):
        at = _child("manifest", field)
        value = manifest.get(field)
        if field not in manifest:
            problems.append(Problem(at, code, f"{at} is required"))
        elif not _non_empty_str(value):
            problems.append(Problem(at, code, f"{at} must be a non-empty str, not {_show(value)}"))
        elif not is_safe_name(value):
            problems.append(
                Problem(
                    at,
                    code,
                    f"{at} {_show(value)} is not a safe name: letters, digits, '.', '_', '-', "
                    "starting with a letter or digit, at most 64 characters",
                )
            )

    entry = manifest.get("entry_point")
    if "entry_point" not in manifest:
        problems.append(
            Problem(
                "manifest.entry_point",
                code,
                'manifest.entry_point is required ("module.path:ClassName")',
            )
        )
    elif (
        not isinstance(entry, str)
        or entry.count(":") != 1
        or not all(_is_dotted_identifier(part) for part in entry.split(":"))
    ):
        problems.append(
            Problem(
                "manifest.entry_point",
                code,
                f'manifest.entry_point must look like "module.path:ClassName", not {_show(entry)}',
            )
        )

    api = manifest.get("api")
    if api is not None and api not in APIS:
        problems.append(
            Problem("manifest.api", code, f"manifest.api must be one of {list(APIS)}, not {api!r}")
        )
    if "supported_pids" not in manifest:
        # An execute-only manifest has no pids: whatever activate/switch binds runs it.
        if manifest_api(manifest) != EXECUTE_ONLY:
            problems.append(
                Problem("manifest.supported_pids", code, "manifest.supported_pids is required")
            )
    else:
        problems.extend(
            _check_pid_list(manifest["supported_pids"], "manifest.supported_pids", code, safe=True)
        )
    if manifest.get("description") is not None and not isinstance(manifest["description"], str):
        problems.append(Problem("manifest.description", code, "manifest.description must be a str"))
    if manifest.get("steps") is not None:
        problems.extend(_check_steps(manifest["steps"], "manifest.steps", code))
    if manifest.get("default_config") is not None and not isinstance(
        manifest["default_config"], dict
    ):
        problems.append(
            Problem("manifest.default_config", code, "manifest.default_config must be an object")
        )
    problems.extend(_check_assets(manifest))
    if info is not None:
        problems.extend(_check_agreement(manifest, info))
    problems.extend(
        Problem(p.where, code, p.message) for p in find_unjsonable(manifest, "manifest")
    )
    return _dedupe(problems)


def _valid_pid_set(pids: object) -> set[str] | None:
    if not isinstance(pids, list) or not all(isinstance(pid, str) for pid in pids):
        return None
    return set(pids)


def _check_assets(manifest: dict[Any, Any]) -> list[Problem]:
    assets = manifest.get("required_assets")
    if assets is None:
        return []
    where = "manifest.required_assets"
    if not isinstance(assets, dict):
        return [
            Problem(where, MANIFEST_MISSING, f"{where} must be an object {{pid: {{kind: path}}}}")
        ]
    problems = []
    # an empty or malformed supported_pids is reported on its own; do not blame every asset too
    pids = _valid_pid_set(manifest.get("supported_pids")) or None
    for pid, kinds in assets.items():
        at = _child(where, pid)
        if not isinstance(pid, str):
            problems.append(
                Problem(where, MANIFEST_MISSING, f"the pid key {_show(pid)} must be a str")
            )
            continue
        if pids is not None and pid not in pids:
            problems.append(
                Problem(
                    at, MANIFEST_MISSING, f"{at}: the pid {_show(pid)} is not in supported_pids"
                )
            )
        if not isinstance(kinds, dict):
            problems.append(
                Problem(at, MANIFEST_MISSING, f"{at} must be an object {{kind: relative path}}")
            )
            continue
        for kind, path in kinds.items():
            if not _non_empty_str(kind):
                problems.append(
                    Problem(
                        at,
                        MANIFEST_MISSING,
                        f"the asset kind {_show(kind)} must be a non-empty str",
                    )
                )
                continue
            problems.extend(_check_relpath(path, _child(at, kind)))
    return problems


def _check_agreement(manifest: dict[Any, Any], info: object) -> list[Problem]:
    if not isinstance(info, dict):
        return []  # check_info reports a malformed get_info; nothing to compare against
    problems = []
    for field in ("name", "version"):
        ours, theirs = manifest.get(field), info.get(field)
        if isinstance(ours, str) and isinstance(theirs, str) and ours != theirs:
            problems.append(
                Problem(
                    _child("manifest", field),
                    MANIFEST_MISSING,
                    f"manifest.{field} is {_show(ours)} "
                    f"but get_info()['{field}'] is {_show(theirs)}",
                )
            )
    ours_set = _valid_pid_set(manifest.get("supported_pids"))
    theirs_set = _valid_pid_set(info.get("supported_pids"))
    if ours_set is not None and theirs_set is not None and ours_set != theirs_set:
        sides = []
        if ours_set - theirs_set:
            sides.append(f"only in the manifest: {', '.join(sorted(ours_set - theirs_set))}")
        if theirs_set - ours_set:
            sides.append(f"only in get_info(): {', '.join(sorted(theirs_set - ours_set))}")
        problems.append(
            Problem(
                "manifest.supported_pids",
                MANIFEST_MISSING,
                "manifest.supported_pids and get_info()['supported_pids'] differ ("
                + "; ".join(sides)
                + ")",
            )
        )
    return problems


def _find_step(info_or_manifest: object, step_index: int) -> dict[str, Any] | None:
    if not isinstance(info_or_manifest, dict) or not _is_int(step_index):
        return None
    steps = info_or_manifest.get("steps")
    if not isinstance(steps, list):
        return None
    for step in steps:
        if isinstance(step, dict) and _is_int(step.get("index")) and step["index"] == step_index:
            return step
    return None


def find_step(info_or_manifest: object, step_index: int) -> dict[str, Any] | None:
    """Return the step with this index from get_info() or a manifest, or None."""
    try:
        return _find_step(info_or_manifest, step_index)
    except Exception:  # hostile mappings: "not found" is the only honest answer
        return None
