"""Rectangles: check_rect and rect lists, against the image size when it is known."""

from __future__ import annotations

from typing import Any

from procvision_algorithm_sdk.errors import (
    COORDINATE_INVALID,
    INVALID_RESULT,
)

from .problem import (
    Problem,
    _as_list,
    _child,
    _image_size,
    _is_int,
    _is_number,
    _never_raises,
    _numpy_hint,
    _show,
)

__all__ = [
    "RECT_FIELDS",
    "check_rect",
]

RECT_FIELDS = ("x", "y", "width", "height")


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


def _well_formed(rect: object, image_width: int | None, image_height: int | None) -> bool:
    """The fast path: True only when every rule of check_rect holds (exact builtin types).

    Anything else, including a bool, a numpy scalar or a NaN score, returns False and takes
    the full check, which then says what is wrong. `image_width`/`image_height` are already
    usable sizes or None (the caller's `_image_size`).
    """
    if type(rect) is not dict:
        return False
    x, y, w, h = rect.get("x"), rect.get("y"), rect.get("width"), rect.get("height")
    if type(x) is not int or type(y) is not int or type(w) is not int or type(h) is not int:
        return False
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        return False
    if (image_width is not None and x + w > image_width) or (
        image_height is not None and y + h > image_height
    ):
        return False
    label = rect.get("label")
    if label is not None and type(label) is not str:
        return False
    score = rect.get("score")
    return score is None or (type(score) in (int, float) and 0 <= score <= 1)


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
    width, height = _image_size(image_width), _image_size(image_height)
    for index, rect in enumerate(value):
        if not _well_formed(rect, width, height):
            problems.extend(check_rect(rect, _child(where, index), width, height))
    return problems
