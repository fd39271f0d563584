"""Checks on an offline package zip before anything of it touches the disk, and safe extraction.

`check_zip` reads only the central directory and a few small members (manifest, requirements,
environment file), so a hostile zip is refused before a single byte is written. `extract_zip`
re-checks every name and counts the bytes it actually writes, because sizes in the central
directory can lie.
"""

from __future__ import annotations

import errno
import json
import shutil
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from procvision_algorithm_sdk.contract import Problem, check_manifest, is_safe_name
from procvision_algorithm_sdk.errors import (
    INVALID_ZIP,
    MANIFEST_MISSING,
    WHEELS_MISSING,
)

from .zipentries import crc_problems, entry_name_problem, entry_problems, kind_problem
from .ziplimits import ZipLimits, size_bound, totals_problems

__all__ = [
    "ZipLayout",
    "ZipLimits",
    "check_zip",
    "entry_name_problem",
    "extract_zip",
    "read_member",
    "remove_tree",
    "safe_name",
    "size_bound",
]

MANIFEST = "manifest.json"
REQUIREMENTS = "requirements.txt"
# The original tool's package also wrote this hash-free copy; its installer installed it.
SANITIZED_REQUIREMENTS = "requirements.sanitized.txt"
ENV_FILE = ".procvision_env.json"
CHECKSUMS = "checksums.sha256"
SIGNATURE = "SIGNATURE"
WHEELS_DIR = "wheels/"

_SMALL_MEMBER_MAX = 4 * 1024 * 1024  # manifest/requirements/env/checksums are read into memory
# macOS archivers add these; they are never part of a package.
_IGNORED_TOP = ("__MACOSX/",)


@dataclass(frozen=True)
class ZipLayout:
    """What a zip that passed `check_zip` contains; names are relative to the package root."""

    prefix: str  # "" for the flat layout, "top/" when nested under one folder
    files: tuple[str, ...]  # every regular file, root-relative, in archive order
    manifest: dict
    requirements: str  # "" when the zip has no requirements.txt
    wheels: tuple[str, ...]  # file names directly under wheels/
    env: dict | None  # .procvision_env.json, if present and a JSON object
    has_checksums: bool
    has_signature: bool
    total_bytes: int
    members: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    # root-relative name -> name inside the archive
    requirements_file: str = REQUIREMENTS  # the root-relative file pip installs
    wheels_beside: bool = False  # the original tool's layout: top/... with wheels/ at the root

    @property
    def name(self) -> str:
        """The manifest's package name."""
        return str(self.manifest.get("name", ""))

    @property
    def version(self) -> str:
        """The manifest's package version."""
        return str(self.manifest.get("version", ""))


# The SDK contract's rule is the only one (it never admits "." or "..": a name starts with a
# letter or digit); this name stays for the store modules and callers that used it.
safe_name = is_safe_name


def _find_prefix(names: list[str]) -> tuple[str | None, bool, str | None]:
    """Return (prefix, wheels_beside, problem): "" when flat, "top/" when nested under one folder.

    wheels_beside: the original tool's zip, `top/...` with `wheels/` at the zip root beside it.
    """
    if MANIFEST in names:
        return "", False, None
    tops = {n.split("/", 1)[0] for n in names}
    beside = len(tops) == 2 and WHEELS_DIR.rstrip("/") in tops
    if beside:
        tops.discard(WHEELS_DIR.rstrip("/"))
    if len(tops) == 1:
        top = next(iter(tops))
        nested = all(
            n.startswith(top + "/") or (beside and n.startswith(WHEELS_DIR)) for n in names
        )
        if nested and f"{top}/{MANIFEST}" in names:
            return top + "/", beside, None
    return (
        None,
        False,
        (
            "manifest.json missing at the zip root, under its one top folder, or under one top "
            "folder with wheels/ beside it"
        ),
    )


def check_zip(
    zip_path: str | Path, limits: ZipLimits | None = None, *, free_bytes: int | None = None
) -> tuple[ZipLayout | None, list[Problem]]:
    """Check an offline package zip (integrity, entry names, limits, manifest) without extracting.

    `free_bytes` is the free disk where it will be unpacked (the store passes
    `shutil.disk_usage(root).free`); the declared uncompressed size must fit
    `limits.max_disk_fraction` of it. Returns the layout when there is no problem, else None and
    the problems (codes 2001 for the archive itself, 2002 for the manifest, 2004 when
    requirements.txt is missing).
    """
    limits = limits or ZipLimits()
    path = Path(zip_path)
    if not path.is_file():
        return None, [Problem("zip", INVALID_ZIP, f"{path} is not a file")]
    try:
        zf = zipfile.ZipFile(path)
    except Exception as exc:  # a crafted header raises NotImplementedError, ValueError, ...
        return None, [Problem("zip", INVALID_ZIP, f"not a readable zip archive: {exc}")]
    with zf:
        try:
            return _check_open_zip(zf, limits, path.stat().st_size, free_bytes)
        except Exception as exc:  # whatever a crafted member makes zipfile raise is a bad zip
            return None, [Problem("zip", INVALID_ZIP, f"archive is corrupt: {exc!r}")]


def _check_open_zip(
    zf: zipfile.ZipFile, limits: ZipLimits, archive_bytes: int, free_bytes: int | None
) -> tuple[ZipLayout | None, list[Problem]]:
    """The checks of `check_zip` on an open archive."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        return None, [
            Problem(
                "zip",
                INVALID_ZIP,
                f"{len(infos)} entries, more than the limit of {limits.max_entries}",
            )
        ]
    total, packed, problems = entry_problems(infos, limits)
    problems.extend(totals_problems(total, packed, archive_bytes, limits, free_bytes))
    if problems:
        return None, problems
    corrupt = crc_problems(zf)
    if corrupt:
        return None, corrupt
    names = [i.filename for i in infos if not any(i.filename.startswith(t) for t in _IGNORED_TOP)]
    prefix, beside, why = _find_prefix(names)
    if prefix is None:
        return None, [Problem("manifest.json", MANIFEST_MISSING, why or "manifest missing")]
    members = _root_members(infos, prefix, beside, problems)
    small = _SmallMembers(zf, members, problems)
    manifest = small.manifest()
    requirements_file, requirements = small.requirements()
    env = small.env()
    if problems or not isinstance(manifest, dict):
        return None, problems
    layout = ZipLayout(
        prefix=prefix,
        files=tuple(members),
        manifest=manifest,
        requirements=requirements,
        wheels=tuple(
            rel[len(WHEELS_DIR) :]
            for rel in members
            if rel.startswith(WHEELS_DIR) and "/" not in rel[len(WHEELS_DIR) :]
        ),
        env=env,
        has_checksums=CHECKSUMS in members,
        has_signature=SIGNATURE in members,
        total_bytes=total,
        members=members,
        requirements_file=requirements_file,
        wheels_beside=beside,
    )
    return layout, []


def _root_members(
    infos: list[zipfile.ZipInfo], prefix: str, beside: bool, problems: list[Problem]
) -> dict[str, str]:
    """Root-relative name -> archive name of every regular file of the package."""
    members: dict[str, str] = {}
    for info in infos:
        if info.is_dir():
            continue
        if info.filename.startswith(prefix):
            rel = info.filename[len(prefix) :]
        elif beside and info.filename.startswith(WHEELS_DIR):
            rel = info.filename  # the original tool put wheels/ beside the project folder
        else:
            continue
        if rel in members:  # top/wheels/x.whl and wheels/x.whl would unpack to one file
            problems.append(Problem(f"zip:{info.filename!r}", INVALID_ZIP, "duplicate entry name"))
        elif rel:
            members[rel] = info.filename
    return members


class _SmallMembers:
    """The small members read into memory (at most 4 MiB each); problems go into `problems`."""

    def __init__(
        self, zf: zipfile.ZipFile, members: dict[str, str], problems: list[Problem]
    ) -> None:
        self.zf, self.members, self.problems = zf, members, problems

    def read(self, rel: str) -> bytes | None:
        """The bytes of a root-relative member; None when absent or too large."""
        arc = self.members.get(rel)
        if arc is None:
            return None
        if self.zf.getinfo(arc).file_size > _SMALL_MEMBER_MAX:
            self.problems.append(Problem(rel, INVALID_ZIP, f"{rel} is larger than 4 MiB"))
            return None
        return self.zf.read(arc)

    def manifest(self) -> object:
        """The parsed manifest.json (None when missing or not JSON), checked by the contract."""
        data = self.read(MANIFEST)
        if data is None:
            self.problems.append(Problem(MANIFEST, MANIFEST_MISSING, "manifest.json missing"))
            return None
        try:
            manifest = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            why = f"manifest.json is not JSON: {exc}"
            self.problems.append(Problem(MANIFEST, MANIFEST_MISSING, why))
            return None
        if manifest is not None:
            # check_manifest also refuses names, versions and pids unfit for a path component
            self.problems.extend(check_manifest(manifest))
        return manifest

    def requirements(self) -> tuple[str, str]:
        """(the file pip installs, its text); "" when missing or not UTF-8."""
        name = SANITIZED_REQUIREMENTS if SANITIZED_REQUIREMENTS in self.members else REQUIREMENTS
        data = self.read(name)
        if data is None:
            why = "requirements.txt missing from the zip"
            self.problems.append(Problem(REQUIREMENTS, WHEELS_MISSING, why))
            return name, ""
        try:
            return name, data.decode("utf-8")
        except UnicodeDecodeError:
            self.problems.append(Problem(REQUIREMENTS, WHEELS_MISSING, "not UTF-8 text"))
            return name, ""

    def env(self) -> dict | None:
        """.procvision_env.json as a dict; None when absent (a bad one is a problem)."""
        data = self.read(ENV_FILE)
        if data is None:
            return None
        try:
            loaded = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.problems.append(Problem(ENV_FILE, INVALID_ZIP, f"not JSON: {exc}"))
            return None
        if isinstance(loaded, dict):
            return loaded
        self.problems.append(Problem(ENV_FILE, INVALID_ZIP, "must be a JSON object"))
        return None


def read_member(zip_path: str | Path, layout: ZipLayout, rel: str) -> bytes:
    """Read one root-relative member of a checked zip into memory."""
    with zipfile.ZipFile(zip_path) as zf:
        return zf.read(layout.members[rel])


def extract_zip(
    zip_path: str | Path, dest: str | Path, layout: ZipLayout, limits: ZipLimits | None = None
) -> None:
    """Extract a checked zip's package root into `dest` (which must not exist yet).

    Every target path is resolved and must stay inside `dest`; the bytes written per member
    and in total are counted, while they are written, against the declared sizes, the limits
    and the share of the free disk measured now. Raises ValueError on any violation (the caller
    removes `dest`).
    """
    limits = limits or ZipLimits()
    root = Path(dest)
    root.mkdir(parents=True, exist_ok=False)
    bound, what = size_bound(limits, shutil.disk_usage(root).free)
    if layout.total_bytes < bound:
        bound, what = layout.total_bytes, "the declared total"
    done: list[str] = []  # the member being unpacked is the last one, for the message
    try:
        _extract_members(zip_path, root, layout, (bound, what), done)
    except OSError as exc:
        if exc.errno in _DISK_ERRNOS:
            raise  # the machine's problem (disk full, read-only), not the archive's
        where = repr(done[-1]) if done else "the archive"
        raise ValueError(f"{where} cannot be unpacked: {exc.strerror or exc}") from exc
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, EOFError, RuntimeError) as exc:
        raise ValueError(f"archive is corrupt: {exc!r}") from exc


# errno values that say the disk failed, not that the archive's names clash or are unusable
_DISK_ERRNOS = frozenset(
    getattr(errno, n)
    for n in ("ENOSPC", "EDQUOT", "EIO", "EROFS", "EMFILE", "ENFILE")
    if hasattr(errno, n)
)


def _extract_members(
    zip_path: str | Path, root: Path, layout: ZipLayout, bound: tuple[int, str], done: list[str]
) -> None:
    allowed, what = bound
    root_resolved = root.resolve()
    written = 0
    with zipfile.ZipFile(zip_path) as zf:
        for rel, arc in layout.members.items():
            done.append(rel)
            why = entry_name_problem(rel)
            if why:
                raise ValueError(f"{rel!r}: {why}")
            info = zf.getinfo(arc)
            why = kind_problem(info)
            if why:
                raise ValueError(f"{rel!r}: {why}")
            target = root.joinpath(*PurePosixPath(rel).parts)
            resolved = target.resolve()
            if root_resolved not in resolved.parents:
                raise ValueError(f"{rel!r} escapes the extraction directory")
            target.parent.mkdir(parents=True, exist_ok=True)
            budget = info.file_size
            with zf.open(info) as src, open(target, "xb") as out:
                while True:
                    chunk = src.read(1024 * 1024)
                    if not chunk:
                        break
                    budget -= len(chunk)
                    written += len(chunk)
                    if budget < 0:
                        raise ValueError(f"{rel!r} is larger than its declared size")
                    if written > allowed:
                        raise ValueError(
                            f"unpacking {rel!r} passes {allowed} bytes in total ({what})"
                        )
                    out.write(chunk)
            mode = (info.external_attr >> 16) & 0o777
            if info.create_system == 3 and mode:
                # keep executable bits but never setuid/setgid/sticky or world-writable
                target.chmod((mode & 0o755) | 0o600)


def remove_tree(path: str | Path) -> None:
    """Remove a directory tree, tolerating a half-deleted one."""
    shutil.rmtree(path, ignore_errors=True)
