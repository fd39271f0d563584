"""Fresh, isolated import of a project's entry point inside the current process."""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from procvision_algorithm_sdk.adapter.tracebacks import is_library_file

_DEVTOOLS = str(Path(__file__).resolve().parent)


def _ours(filename: str) -> bool:
    """A frame of the CLI itself (import_entry, the smoke calls): not the author's code."""
    return str(Path(filename).resolve()).startswith(_DEVTOOLS)


def describe_exception(exc: BaseException) -> str:
    """Return 'Type: message (file:line in func)', no traceback dump.

    The frame named is the innermost one of the author's code (not numpy's, importlib's or
    ours); an exception with no frame of theirs (a module name that does not exist) names none.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if not is_library_file(f.filename) and not _ours(f.filename)]
    where = ""
    if own:
        last = own[-1]
        where = f" ({Path(last.filename).name}:{last.lineno} in {last.name})"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}{': ' + text if text else ''}{where}"


_INSTALLED_DIRS = ("site-packages", "dist-packages")
# Never purged: class identity (BaseAlgorithm) must survive, wherever these were installed.
_KEPT_PACKAGES = ("procvision_algorithm_sdk", "procvision_runner", "procvision_devtools")


def _project_code(path: str, root: Path, venvs: dict[Path, bool]) -> bool:
    """True for a source file of the project itself: under `root`, not in an installed tree.

    A virtual environment (a directory holding pyvenv.cfg) or a site-packages/dist-packages
    directory inside the project holds installed libraries, not the project's code.
    """
    try:
        rel = Path(path).resolve().relative_to(root)
    except (OSError, ValueError):
        return False
    here = root
    for part in rel.parts[:-1]:
        if part in _INSTALLED_DIRS:
            return False
        here = here / part
        if here not in venvs:
            venvs[here] = (here / "pyvenv.cfg").exists()
        if venvs[here]:
            return False
    return True


def purge_modules(project: Path, top_level: str | None) -> None:
    """Drop the project's own modules (and everything under `top_level`) from sys.modules."""
    root = project.resolve()
    venvs: dict[Path, bool] = {}
    for name, module in list(sys.modules.items()):
        if top_level and (name == top_level or name.startswith(top_level + ".")):
            sys.modules.pop(name, None)
            continue
        if name.split(".", 1)[0] in _KEPT_PACKAGES:
            continue
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and _project_code(file, root, venvs):
            sys.modules.pop(name, None)
    importlib.invalidate_caches()


@contextlib.contextmanager
def fresh_import_context(project: Path, top_level: str | None) -> Iterator[None]:
    """Make `project` importable from source only, for the duration of one check.

    Byte-code is neither read nor written (a pycache prefix pointing at an empty directory),
    so a file rewritten within the same second is never served from a stale .pyc.
    """
    root = str(project.resolve())
    purge_modules(project, top_level)
    saved_prefix = sys.pycache_prefix
    saved_dont_write = sys.dont_write_bytecode
    with tempfile.TemporaryDirectory(prefix="pv-validate-pyc-") as empty:
        sys.pycache_prefix = empty
        sys.dont_write_bytecode = True
        sys.path.insert(0, root)
        try:
            yield
        finally:
            with contextlib.suppress(ValueError):
                sys.path.remove(root)
            sys.pycache_prefix = saved_prefix
            sys.dont_write_bytecode = saved_dont_write
            purge_modules(project, top_level)


def import_entry(entry_point: str) -> tuple[ModuleType, Any]:
    """Import 'module.path:ClassName'; return the module and the attribute (raises on failure)."""
    module_name, _, attr = entry_point.partition(":")
    module = importlib.import_module(module_name)
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part)
    return module, target


def _flush_c_stdio() -> None:
    """Flush C stdio buffers (a C extension's printf) while fd 1 still points at stderr."""
    with contextlib.suppress(Exception):  # no libc to reach: nothing buffered there either
        ctypes.CDLL(None).fflush(None)


def _flush_python_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send algorithm output to stderr so the CLI's own stdout (--json) stays clean.

    Both levels: `sys.stdout` for print(), and file descriptor 1 for os.write(1, ...), C
    extensions and subprocesses that inherit it.
    """
    _flush_python_streams()
    try:
        saved = os.dup(1)
    except OSError:  # no fd 1 at all: only Python-level output can be redirected
        saved = -1
    if saved >= 0:
        os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _flush_python_streams()
        if saved >= 0:
            _flush_c_stdio()
            os.dup2(saved, 1)
            os.close(saved)


def project_top_level(entry_point: object) -> str | None:
    """Return the top-level package name of an entry point, if it looks like one."""
    if not isinstance(entry_point, str) or ":" not in entry_point:
        return None
    top = entry_point.split(":", 1)[0].split(".", 1)[0]
    return top if top.isidentifier() else None
