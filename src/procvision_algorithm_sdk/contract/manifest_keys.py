"""The manifest's known top-level keys, and "did you mean" for a key that is almost one of them.

Manifests in the field carry keys of their own (author, sdk_version, ...), so an unknown key is
never refused for being unknown; one that is a near miss of a known key (`supported_pid`,
`entrypoint`) is named with the key it was probably meant to be.
"""

from __future__ import annotations

from typing import Any

from procvision_algorithm_sdk._suggest import did_you_mean
from procvision_algorithm_sdk.errors import MANIFEST_MISSING

from .problem import Problem, _child

__all__ = ["MANIFEST_KEYS", "misspelled_keys", "near_misses", "required_hint"]

MANIFEST_KEYS = (
    "name",
    "version",
    "entry_point",
    "supported_pids",
    "description",
    "steps",
    "required_assets",
    "default_config",
    "api",
    "package",
)

_REQUIRED = ("name", "version", "entry_point", "supported_pids")  # their errors carry the hint


def near_misses(manifest: dict[Any, Any]) -> dict[str, str]:
    """Unknown keys of the manifest that are near misses of a known key: {theirs: known}."""
    found: dict[str, str] = {}
    for key in manifest:
        if isinstance(key, str) and key not in MANIFEST_KEYS:
            known = did_you_mean(key, MANIFEST_KEYS)
            if known is not None:
                found[key] = known
    return found


def required_hint(manifest: dict[Any, Any], field: str) -> str:
    """`; found 'x': did you mean 'field'?` when a near miss of a missing key is present."""
    for theirs, known in near_misses(manifest).items():
        if known == field:
            return f"; the manifest has {theirs!r}: did you mean {field!r}?"
    return ""


def misspelled_keys(manifest: object) -> list[Problem]:
    """Near misses not already named by a missing-key error (warnings for validate)."""
    if not isinstance(manifest, dict):
        return []
    return [
        Problem(
            _child("manifest", theirs),
            MANIFEST_MISSING,
            f"unknown key {theirs!r}: did you mean {known!r}? (it is ignored as written)",
        )
        for theirs, known in near_misses(manifest).items()
        if known in manifest or known not in _REQUIRED
    ]
