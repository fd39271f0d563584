"""Which of the two algorithm APIs a class implements, told once from its `execute` signature.

The lifecycle API (contract sections 2-3) has `get_info`, `pre_execute` and
`execute(step_index, pid, session, user_params, shared_mem_id, image_meta)`; the execute-only API
of the original SDK 0.3.x (contract section 11) has only
`execute(step_index, step_desc, cur_image, guide_image, guide_info)` on decoded arrays.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._suggest import did_you_mean

LIFECYCLE = "lifecycle"
EXECUTE_ONLY = "execute-only"
APIS = (LIFECYCLE, EXECUTE_ONLY)

LIFECYCLE_PARAMS = ("step_index", "pid", "session", "user_params", "shared_mem_id", "image_meta")
EXECUTE_ONLY_PARAMS = ("step_index", "step_desc", "cur_image", "guide_image", "guide_info")
# Hello capabilities of the original execute-only adapter, plus our optional setup/teardown hooks.
EXECUTE_ONLY_CAPABILITIES = (
    "ping",
    "call",
    "shutdown",
    "shared_memory:v1",
    "execute",
    "setup",
    "teardown",
)

BOTH_SHAPES = (
    "implement one of the two APIs: lifecycle get_info(), pre_execute(...) and "
    f"execute({', '.join(LIFECYCLE_PARAMS)}), or execute-only "
    f"execute({', '.join(EXECUTE_ONLY_PARAMS)})"
)


def _positional_names(func: Any) -> list[str] | None:
    """Positional parameter names after `self`, or None when *args hides them."""
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return None
    if inspect.isfunction(func) and params:
        params = params[1:]  # a function taken from the class: drop `self`
    names = []
    for param in params:
        if param.kind == inspect.Parameter.VAR_POSITIONAL:
            return None
        if param.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            names.append(param.name)
    return names


def execute_shape(func: Any) -> str | None:
    """The API an `execute` callable's signature belongs to, or None if it matches neither.

    Parameter names decide first (field code keeps the SDK's names); a renamed signature is told
    by its arity (5 execute-only, 6 lifecycle).
    """
    names = _positional_names(func)
    if names is None:
        return None
    given = set(names)
    if given & set(EXECUTE_ONLY_PARAMS[1:]):
        return EXECUTE_ONLY
    if given & set(LIFECYCLE_PARAMS[1:]):
        return LIFECYCLE
    if len(names) == len(EXECUTE_ONLY_PARAMS):
        return EXECUTE_ONLY
    if len(names) == len(LIFECYCLE_PARAMS):
        return LIFECYCLE
    return None


def _defines(cls: type, name: str) -> bool:
    value = getattr(cls, name, None)
    return callable(value) and not getattr(value, "__isabstractmethod__", False)


def api_of(cls: type) -> str | None:
    """The API class `cls` implements: LIFECYCLE, EXECUTE_ONLY, or None for neither."""
    if not _defines(cls, "execute"):
        return None
    shape = execute_shape(cls.execute)  # type: ignore[attr-defined]
    if shape is not None:
        return shape
    # An opaque signature (*args): get_info and pre_execute make it a lifecycle class.
    if _defines(cls, "get_info") and _defines(cls, "pre_execute"):
        return LIFECYCLE
    return None


def neither_message(cls: type) -> str:
    """Why `cls` cannot run, naming both APIs."""
    return f"{cls.__module__}.{cls.__qualname__} implements neither algorithm API: {BOTH_SHAPES}"


def synthesized_info(manifest: Mapping[str, Any] | None, fallback_name: str = "") -> dict[str, Any]:
    """get_info() of an execute-only package, made from its manifest (it has none of its own)."""
    manifest = manifest if isinstance(manifest, Mapping) else {}
    info: dict[str, Any] = {
        "name": str(manifest.get("name") or fallback_name),
        "version": str(manifest.get("version") or "0.0.0"),
        "description": str(manifest.get("description") or ""),
        "api": EXECUTE_ONLY,
        "supported_pids": [],
        "steps": [],
    }
    return info


def manifest_api(manifest: Mapping[str, Any] | None) -> str:
    """The API a manifest.json declares: execute-only when it says so or has no pids and steps.

    The original execute-only tools wrote `name`, `version`, `entry_point`, `description` only;
    a lifecycle manifest always has `supported_pids` (contract section 5).
    """
    if not isinstance(manifest, Mapping):
        return LIFECYCLE
    if manifest.get("api") in APIS:
        return str(manifest["api"])
    # one with `supported_pid` is a lifecycle manifest with a typo (check_manifest names it)
    pids = "supported_pids" in manifest or did_you_mean("supported_pids", manifest) is not None
    if not pids and "steps" not in manifest:
        return EXECUTE_ONLY
    return LIFECYCLE


def read_manifest(root: Path) -> dict[str, Any] | None:
    """The manifest.json in `root` when it is readable JSON holding an object, else None."""
    try:
        value = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
