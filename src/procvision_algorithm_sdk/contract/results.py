"""Results of pre_execute and execute (contract section 3)."""

from __future__ import annotations

from typing import Any, NamedTuple

from procvision_algorithm_sdk.errors import COORDINATE_INVALID, INVALID_RESULT

from .jsonsafe import find_unjsonable
from .problem import (
    Problem,
    _as_list,
    _child,
    _dedupe,
    _image_size,
    _is_int,
    _never_raises,
    _non_empty_str,
    _show,
)
from .rects import _check_rect_list

__all__ = [
    "DEFAULT_MAX_DEFECTS",
    "MAX_ERROR_MESSAGE_CHARS",
    "MAX_NG_REASON_CHARS",
    "MAX_POSITION_RECTS",
    "Verdict",
    "check_execute_result",
    "check_pre_execute_result",
    "check_result",
    "verdict",
]

DEFAULT_MAX_DEFECTS = 20
MAX_POSITION_RECTS = 20
# Both limits are exclusive: the contract says "< 50 chars" and "< 100 chars".
MAX_NG_REASON_CHARS = 50
MAX_ERROR_MESSAGE_CHARS = 100


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


def check_result(
    result: object,
    phase: str,
    image_width: int | None = None,
    image_height: int | None = None,
    max_defects: int = DEFAULT_MAX_DEFECTS,
) -> list[Problem]:
    """Check the result of phase "pre" (pre_execute) or "execute" with that phase's rules."""
    if phase == "pre":
        return check_pre_execute_result(result, image_width, image_height)
    return check_execute_result(result, image_width, image_height, max_defects)


class Verdict(NamedTuple):
    """A refused result: the code it is answered with and one sentence naming the first problem."""

    code: str
    message: str


def verdict(problems: list[Problem], phase: str) -> Verdict | None:
    """The one refusal of a pre/execute result with `problems`; None when there are none.

    A coordinate problem keeps 1007, every other problem is 1008. The adapter, the Runner's
    re-check and validate --full all answer with this.
    """
    if not problems:
        return None
    method = "pre_execute" if phase == "pre" else "execute"
    first = problems[0]
    code = first.code if first.code in (INVALID_RESULT, COORDINATE_INVALID) else INVALID_RESULT
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    where = f"{first.where}: " if first.where else ""
    return Verdict(code, f"invalid {method} result: {where}{first.message}{more}")
