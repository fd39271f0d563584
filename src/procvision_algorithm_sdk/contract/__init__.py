"""Pure contract checks (contract sections 3 and 5), shared by validate, the adapter and the Runner.

Every check returns every problem it finds as a list of `Problem` and never raises, whatever it
is given: None, wrong types, nested garbage, cycles, huge ints, NaN, numpy objects. The checks
live in one module per subject; this package re-exports every name the single module offered.
"""

from .jsonsafe import MAX_NESTING_DEPTH, find_unjsonable, to_jsonable

# Kept importable from here: the contract tests compare the fast path with the full walk.
from .jsonsafe import _plainly_json as _plainly_json
from .jsonsafe import _walk_json as _walk_json
from .manifest import (
    SAFE_NAME_PATTERN,
    check_info,
    check_manifest,
    find_step,
    is_safe_name,
    legacy_step_zero,
)
from .params import PARAM_TYPES, check_param_specs, validate_user_params
from .problem import Problem
from .rects import RECT_FIELDS, check_rect
from .results import (
    DEFAULT_MAX_DEFECTS,
    MAX_ERROR_MESSAGE_CHARS,
    MAX_NG_REASON_CHARS,
    MAX_POSITION_RECTS,
    Verdict,
    check_execute_result,
    check_pre_execute_result,
    check_result,
    verdict,
)

__all__ = [
    "DEFAULT_MAX_DEFECTS",
    "MAX_ERROR_MESSAGE_CHARS",
    "MAX_NESTING_DEPTH",
    "MAX_NG_REASON_CHARS",
    "MAX_POSITION_RECTS",
    "PARAM_TYPES",
    "RECT_FIELDS",
    "SAFE_NAME_PATTERN",
    "Problem",
    "Verdict",
    "check_execute_result",
    "check_info",
    "check_manifest",
    "check_param_specs",
    "check_pre_execute_result",
    "check_rect",
    "check_result",
    "find_step",
    "find_unjsonable",
    "is_safe_name",
    "legacy_step_zero",
    "to_jsonable",
    "validate_user_params",
    "verdict",
]
