"""The deployment's user_config, checked: which zips each node installs, which version serves a pid.

Nothing from the config touches a path before it is checked here: zips are absolute paths to
existing `.zip` files, names and versions are safe names, pids are safe names.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procvision_algorithm_sdk.contract import is_safe_name
from procvision_algorithm_sdk.errors import INVALID_PARAMS, INVALID_PID

from ..errors import RunnerError

__all__ = ["RolloutPlan", "config_digest", "parse_user_config"]

_KEYS = {"zips", "active"}


@dataclass(frozen=True)
class RolloutPlan:
    """What a node must hold: these zips installed, pid -> (name, version) bound."""

    zips: tuple[Path, ...]
    active: dict[str, tuple[str, str]] = field(default_factory=dict)

    def groups(self) -> dict[tuple[str, str], list[str]]:
        """The pids bound to each version (sorted), in a stable order."""
        out: dict[tuple[str, str], list[str]] = {}
        for pid, key in sorted(self.active.items()):
            out.setdefault(key, []).append(pid)
        return dict(sorted(out.items()))


def parse_user_config(config: Any) -> RolloutPlan:
    """Check a user_config dict; RunnerError (1006/1001) names the first bad entry."""
    if not isinstance(config, dict):
        raise RunnerError("user_config must be a mapping", INVALID_PARAMS)
    unknown = sorted(set(config) - _KEYS)
    if unknown:
        raise RunnerError(f"user_config has unknown keys {unknown}", INVALID_PARAMS)
    zips = config.get("zips", [])
    if not isinstance(zips, list) or not all(isinstance(z, str) for z in zips):
        raise RunnerError("user_config.zips must be a list of paths", INVALID_PARAMS)
    paths = tuple(_zip_path(z) for z in zips)
    active_raw = config.get("active", {})
    if not isinstance(active_raw, dict):
        raise RunnerError("user_config.active must map pid -> {name, version}", INVALID_PARAMS)
    active = {str(pid): _binding(pid, b) for pid, b in active_raw.items()}
    return RolloutPlan(paths, active)


def _zip_path(text: str) -> Path:
    path = Path(text)
    if not path.is_absolute() or path.suffix != ".zip" or ".." in path.parts:
        raise RunnerError(f"zip {text!r} must be an absolute path to a .zip", INVALID_PARAMS)
    if not path.is_file():
        raise RunnerError(f"zip {text} does not exist on this node", INVALID_PARAMS)
    return path


def _binding(pid: Any, value: Any) -> tuple[str, str]:
    if not isinstance(pid, str) or not is_safe_name(pid):
        raise RunnerError(f"pid {pid!r} is not a safe name", INVALID_PID)
    if not isinstance(value, dict) or set(value) != {"name", "version"}:
        raise RunnerError(f"active[{pid}] must be {{name, version}}", INVALID_PARAMS)
    name, version = value["name"], value["version"]
    if not all(isinstance(v, str) and is_safe_name(v) for v in (name, version)):
        raise RunnerError(f"active[{pid}] has an unsafe name or version", INVALID_PARAMS)
    return (name, version)


def config_digest(config: Any) -> str:
    """A short digest of a user_config: a replica reports the one it applied last."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
