"""Entry-level checks of a package zip's central directory: names, kinds, duplicates, sizes, CRCs.

Nothing here reads more than the central directory, except `crc_problems`, which reads every
member once (zipfile.testzip) after the sizes have passed.
"""

from __future__ import annotations

import re
import stat
import zipfile
import zlib

from procvision_algorithm_sdk.contract import Problem
from procvision_algorithm_sdk.errors import INVALID_ZIP

from .ziplimits import ZipLimits

__all__ = ["crc_problems", "entry_name_problem", "entry_problems", "kind_problem"]

_DRIVE = re.compile(r"^[A-Za-z]:")


def entry_name_problem(name: str) -> str | None:
    """Return why an archive member name is unsafe, or None when it is fine."""
    if not name:
        return "empty entry name"
    if "\x00" in name or any(ord(c) < 32 for c in name):
        return "entry name has control characters"
    if "\\" in name:
        return "entry name has a backslash"
    if name.startswith("/"):
        return "absolute entry path"
    if _DRIVE.match(name):
        return "entry path has a drive letter"
    parts = name.rstrip("/").split("/")
    if any(p == ".." for p in parts):
        return "entry path has '..'"
    if any(p in ("", ".") for p in parts):
        return "entry path has an empty or '.' component"
    return None


def kind_problem(info: zipfile.ZipInfo) -> str | None:
    """Return why a member is no plain file or folder (link, device, encrypted), or None."""
    mode = (info.external_attr >> 16) & 0xFFFF
    if info.create_system == 3 and mode:  # unix attributes are meaningful only from unix zips
        fmt = stat.S_IFMT(mode)
        if fmt == stat.S_IFLNK:
            return "entry is a symbolic link"
        if fmt not in (0, stat.S_IFREG, stat.S_IFDIR):
            return "entry is a special file (device, fifo or socket)"
    if info.flag_bits & 0x1:
        return "entry is encrypted"
    return None


def entry_problems(
    infos: list[zipfile.ZipInfo], limits: ZipLimits
) -> tuple[int, int, list[Problem]]:
    """(unpacked bytes, packed bytes, problems) of the entries: names, kinds, clashes, ratios."""
    problems: list[Problem] = []
    total = packed = 0
    seen: set[str] = set()
    files: set[str] = set()
    for info in infos:
        where = f"zip:{info.filename!r}"
        why = entry_name_problem(info.filename) or kind_problem(info)
        if why:
            problems.append(Problem(where, INVALID_ZIP, why))
            continue
        # lower(): names that are one path on a case-insensitive disk clash there too
        key = info.filename.rstrip("/").lower()
        if key in seen:
            problems.append(Problem(where, INVALID_ZIP, "duplicate entry name"))
        seen.add(key)
        if info.is_dir():
            continue
        files.add(key)
        total += info.file_size
        packed += info.compress_size
        bound = limits.max_entry_ratio * max(info.compress_size, 1)
        if info.file_size >= limits.ratio_min_bytes and info.file_size > bound:
            ratio = info.file_size / max(info.compress_size, 1)
            problems.append(
                Problem(
                    where,
                    INVALID_ZIP,
                    f"compression ratio {ratio:.0f}:1 "
                    f"exceeds {limits.max_entry_ratio:.0f}:1 (zip bomb?)",
                )
            )
    problems.extend(_under_a_file(seen, files))
    return total, packed, problems


def _under_a_file(seen: set[str], files: set[str]) -> list[Problem]:
    """Entries that would unpack below a regular file of the same archive."""
    problems = []
    for key in sorted(seen):
        parts = key.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in files:
                problems.append(
                    Problem(
                        f"zip:{key!r}",
                        INVALID_ZIP,
                        f"{parent!r} is a file, so nothing can be unpacked under it",
                    )
                )
                break
    return problems


def crc_problems(zf: zipfile.ZipFile) -> list[Problem]:
    """Read every member once: a corrupt stream, an unknown method or a bad CRC is a problem."""
    try:
        bad = zf.testzip()
    except (zipfile.BadZipFile, zlib.error, OSError, RuntimeError, ValueError, EOFError) as exc:
        return [Problem("zip", INVALID_ZIP, f"archive is corrupt: {exc}")]
    except NotImplementedError as exc:
        return [Problem("zip", INVALID_ZIP, f"unsupported compression: {exc}")]
    if bad is not None:
        return [Problem(f"zip:{bad!r}", INVALID_ZIP, "CRC check failed")]
    return []
