"""Parameter specs of get_info() steps, and user_params validated against them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from procvision_algorithm_sdk.errors import (
    COORDINATE_INVALID,
    INVALID_PARAMS,
    MANIFEST_MISSING,
)

from .problem import (
    Problem,
    _as_list,
    _child,
    _image_size,
    _is_int,
    _is_number,
    _never_raises,
    _non_empty_str,
    _show,
)
from .rects import RECT_FIELDS, _rect_geometry

__all__ = [
    "PARAM_TYPES",
    "check_param_specs",
    "validate_user_params",
]

PARAM_TYPES = ("int", "float", "enum", "bool", "string", "rect")


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
    kind = _check_spec_fields(spec, where, code, seen, index, problems)
    spec_ok = True
    if kind is not None and kind in _TYPE_CHECKS:
        spec_ok = _TYPE_CHECKS[kind](spec, kind, where, code, problems)
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


def _check_spec_fields(
    spec: dict[Any, Any],
    where: str,
    code: str,
    seen: dict[str, int],
    index: int,
    problems: list[Problem],
) -> str | None:
    """The fields every spec has (key, type, description, unit, required); its known type."""
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
    return kind


def _check_number_spec(
    spec: dict[Any, Any], kind: str, where: str, code: str, problems: list[Problem]
) -> bool:
    """min/max of an int or float spec; False when the spec cannot check a default."""
    spec_ok = True
    number = _is_int if kind == "int" else _is_number
    for field in ("min", "max"):
        if spec.get(field) is not None and not number(spec[field]):
            at = _child(where, field)
            problems.append(Problem(at, code, f"{at} must be a {kind}, not {_show(spec[field])}"))
            spec_ok = False
    low, high = spec.get("min"), spec.get("max")
    if spec_ok and _is_number(low) and _is_number(high) and low > high:
        problems.append(Problem(where, code, f"{where} has min {low} > max {high}"))
        spec_ok = False
    return spec_ok


def _check_enum_spec(
    spec: dict[Any, Any], kind: str, where: str, code: str, problems: list[Problem]
) -> bool:
    """The choices of an enum spec; False when the spec cannot check a default."""
    spec_ok = True
    choices = spec.get("choices")
    at = _child(where, "choices")
    if not isinstance(choices, list) or not choices:
        problems.append(Problem(at, code, f"{at} must be a non-empty list, not {_show(choices)}"))
        return False
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
                Problem(_child(at, index), code, f"the choice {_show(choice)} is listed twice")
            )
    return spec_ok


def _check_string_spec(
    spec: dict[Any, Any], kind: str, where: str, code: str, problems: list[Problem]
) -> bool:
    """min_length/max_length/pattern of a string spec; False when it cannot check a default."""
    spec_ok = True
    for field in ("min_length", "max_length"):
        value = spec.get(field)
        if value is not None and not (_is_int(value) and value >= 0):
            at = _child(where, field)
            problems.append(Problem(at, code, f"{at} must be an integer >= 0, not {_show(value)}"))
            spec_ok = False
    low, high = spec.get("min_length"), spec.get("max_length")
    if spec_ok and _is_int(low) and _is_int(high) and low > high:
        problems.append(Problem(where, code, f"{where} has min_length {low} > max_length {high}"))
        spec_ok = False
    if spec.get("pattern") is not None and _compiled(spec["pattern"]) is None:
        at = _child(where, "pattern")
        problems.append(
            Problem(
                at,
                code,
                f"{at} must be a regular expression that compiles, not {_show(spec['pattern'])}",
            )
        )
        spec_ok = False
    return spec_ok


# The type-specific checks of a spec, by its type (bool and rect have no extra fields).
_TYPE_CHECKS: dict[str, Callable[[dict[Any, Any], str, str, str, list[Problem]], bool]] = {
    "int": _check_number_spec,
    "float": _check_number_spec,
    "enum": _check_enum_spec,
    "string": _check_string_spec,
}


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
