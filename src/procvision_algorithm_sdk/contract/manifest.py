"""get_info() and manifest.json checks, the safe-name rule, and step lookup."""

from __future__ import annotations

import keyword
import re
from typing import Any

from procvision_algorithm_sdk.errors import (
    INVALID_RESULT,
    MANIFEST_MISSING,
)
from procvision_algorithm_sdk.generation import APIS, EXECUTE_ONLY, manifest_api

from .jsonsafe import find_unjsonable
from .manifest_keys import required_hint
from .params import check_param_specs
from .problem import (
    Problem,
    _as_list,
    _child,
    _dedupe,
    _is_int,
    _never_raises,
    _non_empty_str,
    _show,
)

__all__ = [
    "SAFE_NAME_PATTERN",
    "check_info",
    "check_manifest",
    "find_step",
    "is_safe_name",
    "legacy_step_zero",
]

# The one rule for names that become path components (package names, versions, pids).
SAFE_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_SAFE_NAME = re.compile(SAFE_NAME_PATTERN)
_DRIVE = re.compile(r"[A-Za-z]:")


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
        if not _is_int(index) or index < 0:
            # 0 is the original `init`'s numbering, accepted as legacy (validate warns about it).
            problems.append(
                Problem(
                    _child(at, "index"),
                    code,
                    f"a step index must be an integer >= 1 (0: legacy numbering), not "
                    f"{_show(index)}",
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
            hint = required_hint(manifest, field)
            problems.append(Problem(at, code, f"{at} is required{hint}"))
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
                'manifest.entry_point is required ("module.path:ClassName")'
                + required_hint(manifest, "entry_point"),
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
        # An execute-only manifest has no pids: whatever activate/switch binds runs it (one
        # with a near miss such as `supported_pid` is not one: generation.manifest_api).
        if manifest_api(manifest) != EXECUTE_ONLY:
            problems.append(
                Problem(
                    "manifest.supported_pids",
                    code,
                    "manifest.supported_pids is required"
                    + required_hint(manifest, "supported_pids"),
                )
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
    problems.extend(_check_package_lists(manifest.get("package")))
    if info is not None:
        problems.extend(_check_agreement(manifest, info))
    problems.extend(
        Problem(p.where, code, p.message) for p in find_unjsonable(manifest, "manifest")
    )
    return _dedupe(problems)


def _check_package_lists(table: object) -> list[Problem]:
    """`package`: {include?: [pattern], exclude?: [pattern]}, .gitignore-style file patterns."""
    where = "manifest.package"
    if table is None:
        return []
    if not isinstance(table, dict):
        return [Problem(where, MANIFEST_MISSING, f"{where} must be an object {{include, exclude}}")]
    problems = []
    for key, value in table.items():
        at = _child(where, key)
        if key not in ("include", "exclude"):
            problems.append(
                Problem(at, MANIFEST_MISSING, f"{at}: unknown key (use include or exclude)")
            )
        elif not isinstance(value, list) or not all(_non_empty_str(p) for p in value):
            problems.append(
                Problem(at, MANIFEST_MISSING, f"{at} must be a list of non-empty str patterns")
            )
    return problems


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


def legacy_step_zero(info_or_manifest: object, where: str) -> list[Problem]:
    """Where a steps list uses index 0 (the original init's numbering): warnings, not failures."""
    steps = info_or_manifest.get("steps") if isinstance(info_or_manifest, dict) else None
    found: list[Problem] = []
    for position, step in enumerate(steps if isinstance(steps, list) else []):
        if isinstance(step, dict) and _is_int(step.get("index")) and step["index"] == 0:
            at = _child(_child(_child(where, "steps"), position), "index")
            message = (
                "step index 0 is the original init's numbering: accepted as legacy and passed "
                "to the algorithm unchanged (new projects number steps from 1)"
            )
            found.append(Problem(at, MANIFEST_MISSING, message))
    return found


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
