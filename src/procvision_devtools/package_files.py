"""Which project files go into a package: built-in exclusions, `.gitignore`, include/exclude.

A file goes in when no built-in rule leaves it out (VCS and tool folders, venvs, caches, built
artefacts, secret-looking files), no exclude pattern matches it, and either it matches an include
pattern or (no include pattern given) no `.gitignore` on its way from the project root ignores
it. Patterns use `.gitignore` syntax, relative to the project root. Exclude always wins; an
include list is authoritative over `.gitignore` (so a gitignored model file can be shipped on
purpose); `manifest.json` always goes in.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from procvision_algorithm_sdk.errors import INVALID_ZIP, MANIFEST_MISSING

from ._common import CliError

if TYPE_CHECKING:  # pathspec loads when files are chosen, not with the parser
    from pathspec import GitIgnoreSpec

EXCLUDED_DIRS = {
    ".git",
    ".hg",
    ".svn",
    "__pycache__",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    "build",
    "dist",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".cache",
    ".idea",
    ".vscode",
    "wheels",
    ".eggs",
    "node_modules",
    ".ipynb_checkpoints",
}
EXCLUDED_SUFFIXES = (".zip", ".pyc", ".pyo", ".whl", ".egg-info", ".DS_Store")
# Version-control bookkeeping: it means nothing on a station.
EXCLUDED_NAMES = {".gitignore", ".gitattributes", ".gitmodules", ".hgignore"}
# Secret-looking files never ship, whatever directory they sit in: a station's package store
# is not a place for private keys or credentials.
SECRET_PATTERNS = ("*.pem", "*.key", ".env", ".env.*", "id_rsa*")

# Why a file was left out (the keys of Selection.left_out's values).
GITIGNORED, EXCLUDED, NOT_INCLUDED, SECRET = "gitignored", "excluded", "not included", "secret"


@dataclass
class Selection:
    """The files that go in (root-relative, sorted) and those left out, with the reason."""

    files: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)


def _excluded_dir(path: Path) -> bool:
    name = path.name
    return (
        name in EXCLUDED_DIRS
        or name.endswith(".egg-info")
        or (path / "pyvenv.cfg").exists()  # a virtual environment under any name
    )


def is_secret(name: str) -> bool:
    """True for a file name that looks like a key or credentials file."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in SECRET_PATTERNS)


def _spec(patterns: Iterable[str], where: str) -> GitIgnoreSpec:
    from pathspec import GitIgnoreSpec

    try:
        return GitIgnoreSpec.from_lines(list(patterns))
    except (ValueError, TypeError) as exc:
        raise CliError(MANIFEST_MISSING, f"{where}: bad pattern: {exc}") from None


def manifest_patterns(manifest: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The manifest's `package.include` / `package.exclude` lists (the contract checks them)."""
    table = manifest.get("package")
    if not isinstance(table, dict):
        return [], []
    include, exclude = table.get("include") or [], table.get("exclude") or []
    return [str(p) for p in include], [str(p) for p in exclude]


class _GitIgnores:
    """The `.gitignore` files met on the walk, each matching paths relative to its folder."""

    def __init__(self) -> None:
        self._specs: list[tuple[PurePosixPath, GitIgnoreSpec]] = []

    def read(self, folder: Path, rel: PurePosixPath) -> None:
        path = folder / ".gitignore"
        if not path.is_file() or path.is_symlink():
            return
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return
        self._specs.append((rel, _spec(lines, f"{path}")))

    def ignored(self, rel: PurePosixPath, is_dir: bool) -> bool:
        # The deepest .gitignore that has a say decides (git's precedence), negations included.
        verdict = False
        for base, spec in self._specs:
            if base != PurePosixPath(".") and base not in rel.parents:
                continue
            sub = rel.relative_to(base).as_posix() + ("/" if is_dir else "")
            result = spec.check_file(sub)
            if result.include is not None:
                verdict = result.include
        return verdict


def select_files(
    project: Path,
    skip: set[Path],
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    regenerated: Iterable[str] = (),
) -> Selection:
    """Walk `project` and decide file by file (rules in the module docstring).

    Files in `skip` (resolved paths: the output zip, the signing key) are left out as secrets;
    root-relative names in `regenerated` (written by the packager itself) are dropped silently.
    """
    walk = _Walk(project, skip, list(include), list(exclude), set(regenerated))
    for dirpath, dirnames, filenames in os.walk(project, followlinks=False):
        here = Path(dirpath)
        rel_here = PurePosixPath(here.relative_to(project).as_posix())
        walk.ignores.read(here, rel_here)
        dirnames[:] = [d for d in sorted(dirnames) if walk.enter(here / d, rel_here / d)]
        for name in sorted(filenames):
            walk.decide(here / name)
    return walk.chosen


class _Walk:
    """The rules of one selection and what it decided so far."""

    def __init__(
        self,
        project: Path,
        skip: set[Path],
        include: list[str],
        exclude: list[str],
        regenerated: set[str],
    ) -> None:
        self.project, self.skip, self.regenerated = project, skip, regenerated
        self.include = _spec(include, "include") if include else None
        self.exclude = _spec(exclude, "exclude")
        self.ignores = _GitIgnores()
        self.chosen = Selection()

    def enter(self, path: Path, rel: PurePosixPath) -> bool:
        """Whether the walk goes into this folder (a pruned one is noted once, as a folder)."""
        if path.is_symlink() or _excluded_dir(path):
            return False
        shown = f"{rel.as_posix()}/"
        if self.exclude.match_file(shown):
            self.chosen.left_out[shown] = EXCLUDED
            return False
        if self.include is None and self.ignores.ignored(rel, is_dir=True):
            self.chosen.left_out[shown] = GITIGNORED
            return False
        return True

    def decide(self, path: Path) -> None:
        """Put the file in, or note why it stays out."""
        rel, name = path.relative_to(self.project).as_posix(), path.name
        if path.is_symlink() or name.endswith(EXCLUDED_SUFFIXES) or name in EXCLUDED_NAMES:
            return
        if rel in self.regenerated:
            return
        reason = self._reason(path, rel)
        if reason is not None:
            self.chosen.left_out[rel] = reason
            return
        if "\\" in rel or any(ord(c) < 32 for c in rel):
            raise CliError(INVALID_ZIP, f"file name {rel!r} cannot go into a package")
        self.chosen.files.append(rel)

    def _reason(self, path: Path, rel: str) -> str | None:
        if path.resolve() in self.skip or is_secret(path.name):
            return SECRET
        if rel == "manifest.json":
            return None
        if self.exclude.match_file(rel):
            return EXCLUDED
        if self.include is not None:
            return None if self.include.match_file(rel) else NOT_INCLUDED
        return GITIGNORED if self.ignores.ignored(PurePosixPath(rel), is_dir=False) else None


def summarize(paths: Iterable[str]) -> list[str]:
    """One entry per top-level name: a file by name, a folder with its file count.

    A path ending in "/" is a folder that was not walked (its files were not counted).
    """
    counts: dict[str, int] = {}
    for rel in paths:
        top, sep, rest = rel.partition("/")
        key = top + sep
        counts[key] = counts.get(key, 0) + (0 if sep and (not rest or rest.endswith("/")) else 1)
    return [
        f"{key} ({n} file{'s' * (n != 1)})" if key.endswith("/") and n else key
        for key, n in sorted(counts.items())
    ]
