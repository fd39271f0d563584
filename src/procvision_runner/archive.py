"""The result archive: the last NG frames (and sampled OK ones) on disk, bounded in count and bytes.

Each entry is one directory `<id>/` holding `frame.png` (the inspected frame), `thumb.jpg` and
`result.json` (the verdict, rects, package, step, timings). An entry is written into a temporary
directory, fsynced and renamed into place, so a crash leaves either the whole entry or none; the
oldest entries are removed until the archive is back within both bounds.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ENTRY_ID_PATTERN", "ArchiveLimits", "ResultArchive"]

# Ids are made here, never taken from a request unchecked: time, then a per-process counter.
ENTRY_ID_PATTERN = r"^[0-9]{13}-[0-9]{6}$"
_ENTRY_ID = re.compile(ENTRY_ID_PATTERN)
_TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class ArchiveLimits:
    """How much the archive keeps."""

    max_count: int = 200
    max_bytes: int = 512 * 1024**2
    ok_sample_every: int = 0  # keep every Nth OK frame too (0: only NG)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


class ResultArchive:
    """Bounded on-disk archive of inspected frames with their results (thread-safe)."""

    def __init__(self, root: Path, limits: ArchiveLimits | None = None) -> None:
        self.root = Path(root)
        self.limits = limits or ArchiveLimits()
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._ok_seen = 0
        self.root.mkdir(parents=True, exist_ok=True)
        for leftover in self.root.glob(_TMP_PREFIX + "*"):  # a crash mid-write
            shutil.rmtree(leftover, ignore_errors=True)
        self._sizes: dict[str, int] = {
            p.name: _dir_bytes(p)
            for p in sorted(self.root.iterdir())
            if p.is_dir() and _ENTRY_ID.match(p.name)
        }
        with self._lock:
            self._prune()

    def wants(self, verdict: str) -> bool:
        """Whether a result with this verdict ("OK", "NG", "ERROR") goes into the archive."""
        if verdict == "NG":
            return True
        if verdict == "OK" and self.limits.ok_sample_every > 0:
            with self._lock:
                self._ok_seen += 1
                return self._ok_seen % self.limits.ok_sample_every == 0
        return False

    def add(self, record: dict[str, Any], frame: np.ndarray, thumb_jpeg: bytes) -> str:
        """Write one entry (frame as PNG, thumbnail, record as JSON); return its id."""
        from PIL import Image

        entry_id = f"{int(time.time() * 1000):013d}-{next(self._numbers) % 1_000_000:06d}"
        tmp = self.root / f"{_TMP_PREFIX}{entry_id}"
        tmp.mkdir()
        try:
            image = Image.fromarray(frame if frame.ndim == 3 else frame.squeeze())
            png = tmp / "frame.png"
            image.save(png, format="PNG", compress_level=1)
            with open(png, "rb+") as fh:
                os.fsync(fh.fileno())
            _write(tmp / "thumb.jpg", thumb_jpeg)
            body = dict(record, id=entry_id)
            _write(tmp / "result.json", json.dumps(body, ensure_ascii=False).encode("utf-8"))
            _fsync_dir(tmp)
            os.rename(tmp, self.root / entry_id)
            _fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        with self._lock:
            self._sizes[entry_id] = _dir_bytes(self.root / entry_id)
            self._prune()
        return entry_id

    def _prune(self) -> None:
        """Drop the oldest entries until both bounds hold (caller holds the lock)."""
        ids = sorted(self._sizes)
        total = sum(self._sizes.values())
        while ids and (len(ids) > self.limits.max_count or total > self.limits.max_bytes):
            oldest = ids.pop(0)
            total -= self._sizes.pop(oldest)
            shutil.rmtree(self.root / oldest, ignore_errors=True)

    def usage(self) -> dict[str, int]:
        """Entries and bytes held now."""
        with self._lock:
            return {"count": len(self._sizes), "bytes": sum(self._sizes.values())}

    def list(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest entries' records, newest first."""
        with self._lock:
            ids = sorted(self._sizes, reverse=True)[: max(0, limit)]
        out = []
        for entry_id in ids:
            record = self.get(entry_id)
            if record is not None:
                out.append(record)
        return out

    def get(self, entry_id: str) -> dict[str, Any] | None:
        """One entry's record, None when there is no such entry."""
        path = self.file(entry_id, "result.json")
        if path is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            value = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(value, dict):
                return value
        return None

    def file(self, entry_id: str, name: str) -> Path | None:
        """The path of one of an entry's files, None for an unknown id or file."""
        if not _ENTRY_ID.match(entry_id) or name not in ("frame.png", "thumb.jpg", "result.json"):
            return None
        path = self.root / entry_id / name
        return path if path.is_file() else None
