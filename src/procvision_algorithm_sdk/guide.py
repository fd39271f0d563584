"""The execute-only API's `guide_info`: where on the guide image the algorithm should look.

Shape, as the field's host sends it: `[{"label": "1", "posList": [{"x", "y", "width",
"height"}]}]`. Malformed structure is 1006; a malformed rect or one outside the guide image is
1007, with the location (`guide_info[0].posList[1].width`).
"""

from __future__ import annotations

from typing import Any

from .contract import Problem, check_rect, find_unjsonable
from .errors import INVALID_PARAMS

MAX_GUIDE_ITEMS = 1000


def check_guide_info(
    guide_info: object, image_width: int | None = None, image_height: int | None = None
) -> list[Problem]:
    """Check guide_info against its shape and the guide image's bounds; never raises."""
    where = "guide_info"
    if not isinstance(guide_info, list):
        return [Problem(where, INVALID_PARAMS, f"{where} must be a list, not {_kind(guide_info)}")]
    if len(guide_info) > MAX_GUIDE_ITEMS:
        return [Problem(where, INVALID_PARAMS, f"{where} has more than {MAX_GUIDE_ITEMS} items")]
    problems = [
        Problem(p.where, INVALID_PARAMS, p.message) for p in find_unjsonable(guide_info, where)
    ]
    if problems:
        return problems
    for number, item in enumerate(guide_info):
        at = f"{where}[{number}]"
        if not isinstance(item, dict):
            problems.append(
                Problem(at, INVALID_PARAMS, f"{at} must be an object, not {_kind(item)}")
            )
            continue
        label = item.get("label")
        if (label is not None and not isinstance(label, (str, int))) or isinstance(label, bool):
            problems.append(
                Problem(f"{at}.label", INVALID_PARAMS, f"{at}.label must be a str or an int")
            )
        positions = item.get("posList")
        if not isinstance(positions, list):
            problems.append(
                Problem(f"{at}.posList", INVALID_PARAMS, f"{at}.posList must be a list of rects")
            )
            continue
        for index, rect in enumerate(positions):
            problems.extend(
                _only_geometry(
                    check_rect(rect, f"{at}.posList[{index}]", image_width, image_height)
                )
            )
    return problems


def _only_geometry(problems: list[Problem]) -> list[Problem]:
    # A posList rect's extra keys (label, score) are the host's business, not a result's.
    return [p for p in problems if not p.where.endswith((".label", ".score"))]


def _kind(value: Any) -> str:
    return type(value).__name__
