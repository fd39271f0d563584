"""Worker start-up: stdio protection, entry-point discovery (with the TOML fallback), loading."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .entry_hints import entry_hint

__all__ = [
    "ENTRY_ENV",
    "ROOT_ENV",
    "StartupError",
    "discover_entry",
    "entry_point_from_toml_text",
    "load_algorithm",
    "load_class",
    "protect_stdio",
]

ENTRY_ENV = "PROC_ENTRY_POINT"
ROOT_ENV = "PROC_ALGO_ROOT"

_ENTRY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class StartupError(Exception):
    """The algorithm could not be found, imported or instantiated (reported as 1003, exit 2)."""


# ---------------------------------------------------------------------------------------------
# start-up: stdio protection and entry discovery


def protect_stdio() -> tuple[int, int]:
    """Move the protocol to private fds; point fd 1 at stderr and fd 0 at /dev/null.

    Returns (protocol_in, protocol_out). Both are non-inheritable, so processes the algorithm
    starts never see protocol bytes either.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()
    protocol_out = os.dup(1)
    os.dup2(2, 1)
    protocol_in = os.dup(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(devnull, 0)
    finally:
        os.close(devnull)
    # sys.stdout still wraps fd 1 (now stderr); line buffering keeps prints timely in the logs.
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        with contextlib.suppress(Exception):
            reconfigure(line_buffering=True)
    return protocol_in, protocol_out


def _read_pyproject_entry(path: Path) -> str | None:
    """Return `[tool.procvision.algorithm] entry_point` from a pyproject.toml, if present."""
    text = path.read_text(encoding="utf-8")
    try:
        import tomllib  # Python >= 3.11

        table: Any = tomllib.loads(text)
        for key in ("tool", "procvision", "algorithm"):
            table = table.get(key) if isinstance(table, dict) else None
        value = table.get("entry_point") if isinstance(table, dict) else None
        return value if isinstance(value, str) else None
    except ImportError:
        return entry_point_from_toml_text(text)


def entry_point_from_toml_text(text: str) -> str | None:
    """Python 3.10 without tomllib: find the one key we need, line by line."""
    in_table = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            in_table = line.replace(" ", "") == "[tool.procvision.algorithm]"
            continue
        if in_table:
            match = re.match(r"""entry_point\s*=\s*(["'])(.*?)\1\s*(#.*)?$""", line)
            if match:
                return match.group(2)
    return None


FALLBACK_ENTRY = "algorithm.main:Algorithm"
_YAML_ENTRY = re.compile(r"""^entry_point\s*:\s*["']?([\w.]+:[\w.]+)["']?\s*(#.*)?$""")


def _read_manifest_yaml_entry(path: Path) -> str | None:
    """`entry_point: mod:Class` from a manifest.yaml (the one key needed; no YAML parser)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError):
        return None
    for line in lines:
        match = _YAML_ENTRY.match(line.strip())
        if match:
            return match.group(1)
    return None


def discover_entry(
    cli_entry: str | None, environ: Mapping[str, str], cwd: Path
) -> tuple[str, str, Path | None]:
    """Return (entry_point, where it came from, root dir to import from).

    Order: `--entry`, PROC_ENTRY_POINT, manifest.json (PROC_ALGO_ROOT, then cwd), then
    manifest.yaml, then `[tool.procvision.algorithm] entry_point` in pyproject.toml (same
    dirs), then the original SDK's fallback `algorithm.main:Algorithm`.
    """
    root_env = environ.get(ROOT_ENV)
    roots: list[Path] = []
    if root_env:
        roots.append(Path(root_env))
    roots.append(cwd)
    if cli_entry:
        return cli_entry, "--entry", Path(root_env) if root_env else None
    if environ.get(ENTRY_ENV):
        return environ[ENTRY_ENV], ENTRY_ENV, Path(root_env) if root_env else None
    for root in roots:
        manifest = root / "manifest.json"
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise StartupError(f"{manifest} is not readable JSON: {exc}") from exc
            value = data.get("entry_point") if isinstance(data, dict) else None
            if not isinstance(value, str):
                raise StartupError(f"{manifest} has no entry_point string")
            return value, str(manifest), root
    for root in roots:
        value = _read_manifest_yaml_entry(root / "manifest.yaml")
        if value:
            return value, str(root / "manifest.yaml"), root
    for root in roots:
        pyproject = root / "pyproject.toml"
        if pyproject.is_file():
            try:
                value = _read_pyproject_entry(pyproject)
            except (OSError, ValueError) as exc:
                raise StartupError(f"{pyproject} is not readable TOML: {exc}") from exc
            if value:
                return value, str(pyproject), root
    for root in roots:
        # The original SDK's last resort: an `algorithm` package with main.Algorithm.
        if (root / "algorithm" / "main.py").is_file():
            return FALLBACK_ENTRY, "fallback", root
    raise StartupError(
        "no entry point: pass --entry module:Class, set PROC_ENTRY_POINT, or run in a directory "
        "with manifest.json or pyproject.toml [tool.procvision.algorithm] entry_point"
    )


def load_class(entry: str, root: Path | None) -> Any:
    """Import `module:Class` (root first on sys.path) and return the class; StartupError.

    A typo in the module or class name gets a "did you mean" from the project's modules or the
    module's classes. A StartupError raised while importing (a wrapper module that loads the
    user's entry itself, as validate --full's hook counter does) is passed on unchanged, so the
    message names the user's entry point, not the wrapper.
    """
    if not _ENTRY.match(entry):
        raise StartupError(f"entry point {entry!r} is not of the form module.path:ClassName")
    if root is not None:
        root_text = str(root.resolve())
        if root_text not in sys.path:
            sys.path.insert(0, root_text)
    module_name, _, attr_path = entry.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for attr in attr_path.split("."):
            target = getattr(target, attr)
    except StartupError:
        raise
    except Exception as exc:
        hint = entry_hint(entry, exc, root)
        raise StartupError(f"cannot import {entry}: {type(exc).__name__}: {exc}{hint}") from exc
    return target


def load_algorithm(entry: str, root: Path | None) -> Any:
    """Import `module:Class` (root first on sys.path) and return an instance."""
    target = load_class(entry, root)
    if not callable(target):
        raise StartupError(f"entry point {entry} is not a class")
    try:
        return target()
    except Exception as exc:
        raise StartupError(f"cannot instantiate {entry}: {type(exc).__name__}: {exc}") from exc
