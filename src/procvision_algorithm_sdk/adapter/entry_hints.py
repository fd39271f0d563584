""" "did you mean" for an entry point whose module or class is a typo (`main:Algo` vs `mian:Algo`).

The candidates are the project's own modules (a bounded walk of its root, without venvs, caches
and hidden folders) and the classes the imported module defines.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .._suggest import did_you_mean

__all__ = ["entry_hint", "project_modules"]

_SKIP_DIRS = frozenset(
    {"__pycache__", "site-packages", "dist-packages", "node_modules", "wheels", "build", "dist"}
)
_MAX_DEPTH = 5
_MAX_FILES = 5000
_CUTOFF = 0.6  # a module path is long: one or two wrong letters stay well above this


def project_modules(root: Path) -> list[str]:
    """Dotted names of the .py modules under `root` (bounded; venvs and hidden dirs skipped)."""
    found: list[str] = []
    base = str(root)
    for here, dirs, files in os.walk(base):
        rel = os.path.relpath(here, base)
        parts = [] if rel == "." else rel.split(os.sep)
        if len(parts) >= _MAX_DEPTH or "pyvenv.cfg" in files:
            dirs[:] = []
            continue
        dirs[:] = sorted(
            d for d in dirs if d.isidentifier() and d not in _SKIP_DIRS and not d.startswith(".")
        )
        for name in sorted(files):
            if name.endswith(".py") and name[:-3].isidentifier():
                stem = name[:-3]
                found.append(".".join(parts if stem == "__init__" else [*parts, stem]))
        if len(found) >= _MAX_FILES:
            break
    return [name for name in found if name]


def _module_guess(module: str, missing: str, root: Path) -> str | None:
    if not (module == missing or module.startswith(missing + ".")):
        return None  # a dependency of the module is missing, not the module itself
    return did_you_mean(module, project_modules(root), cutoff=_CUTOFF)


def _class_guess(module: str, attr: str) -> str | None:
    loaded = sys.modules.get(module)
    if loaded is None:
        return None
    first = attr.split(".", 1)[0]
    if hasattr(loaded, first):
        return None  # the class exists: something deeper or inside it failed
    classes = [k for k, v in vars(loaded).items() if isinstance(v, type) and not k.startswith("_")]
    guess = did_you_mean(first, classes, cutoff=_CUTOFF)
    return None if guess is None else attr.replace(first, guess, 1)


def entry_hint(entry: str, exc: BaseException, root: Path | None) -> str:
    """`; did you mean 'pkg.main:Algo'?` for a module or class typo in `entry`, else ""."""
    module, _, attr = entry.partition(":")
    try:
        if isinstance(exc, ModuleNotFoundError) and exc.name:
            guess = _module_guess(module, exc.name, root or Path.cwd())
            return f"; did you mean {guess + ':' + attr!r}?" if guess else ""
        if isinstance(exc, AttributeError):
            guess = _class_guess(module, attr)
            return f"; did you mean {module + ':' + guess!r}?" if guess else ""
    except (OSError, ValueError):  # an unreadable tree: no suggestion rather than a new error
        return ""
    return ""
