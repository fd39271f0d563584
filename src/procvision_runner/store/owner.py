"""The store's owner: the one serving Runner, holding the store for its whole life.

    <root>/.owner.lock  an OS file lock. `procvision-runner serve` holds it for its life; a CLI
                        command holds it only while it changes the store directly (no server).
                        The OS drops it when its process dies, so a SIGKILLed server never
                        blocks the next one.
    <root>/owner.json   who serves the store and where: pid, start_ticks, boot_id, host, port,
                        scheme, since. Written atomically once the lock is held, removed before
                        it is released. A record left by a killed server is recognised as stale
                        (lock free, or pid/start time/boot id not matching) and replaced.

The lock decides; the record only informs: a live record without a held lock means nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from procvision_algorithm_sdk.errors import UNKNOWN_ERROR

from .liveness import identity, is_alive
from .lock import StoreError
from .registry import atomic_write_json

__all__ = ["OwnerRecord", "StoreOwnership", "change_access", "claim_store", "live_owner"]

OWNER_LOCK = ".owner.lock"
OWNER_FILE = "owner.json"
_POLL_S = 0.05


@dataclass(frozen=True)
class OwnerRecord:
    """The serving Runner that owns a store, as recorded in `owner.json`."""

    pid: int
    start_ticks: int | None
    boot_id: str | None
    host: str
    port: int
    scheme: str
    since: str

    @property
    def url(self) -> str:
        """Base URL a local client uses (a wildcard bind is reached on loopback)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}"

    def describe(self) -> str:
        """`procvision-runner serve (pid N at URL, since T)` for messages."""
        return f"procvision-runner serve (pid {self.pid} at {self.url}, since {self.since})"

    def is_alive(self) -> bool:
        """Whether the recorded process still runs (same pid, start time and boot)."""
        return is_alive(self.to_json())

    def to_json(self) -> dict[str, Any]:
        """The record as written to owner.json."""
        return {
            "pid": self.pid,
            "start_ticks": self.start_ticks,
            "boot_id": self.boot_id,
            "host": self.host,
            "port": self.port,
            "scheme": self.scheme,
            "since": self.since,
        }

    @classmethod
    def from_json(cls, doc: object) -> OwnerRecord | None:
        """The record in a parsed owner.json, or None when it does not have the record's shape."""
        if not isinstance(doc, dict):
            return None
        try:
            record = cls(
                pid=doc["pid"],
                start_ticks=doc.get("start_ticks"),
                boot_id=doc.get("boot_id"),
                host=doc["host"],
                port=doc["port"],
                scheme=doc.get("scheme", "http"),
                since=doc.get("since", "?"),
            )
        except (KeyError, TypeError):
            return None
        ok = (
            isinstance(record.pid, int)
            and isinstance(record.port, int)
            and isinstance(record.host, str)
            and record.scheme in ("http", "https")
        )
        return record if ok else None


def read_owner(root: Path) -> OwnerRecord | None:
    """The record in `<root>/owner.json` (live or not), or None when absent or unreadable."""
    try:
        doc = json.loads((Path(root) / OWNER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return OwnerRecord.from_json(doc)


def _lock(root: Path) -> FileLock:
    Path(root).mkdir(parents=True, exist_ok=True)
    return FileLock(str(Path(root) / OWNER_LOCK), thread_local=False)


def _try(lock: FileLock) -> bool:
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    return True


def live_owner(root: Path) -> OwnerRecord | None:
    """The server that owns the store now, or None (no record, or a stale one).

    Read-only: it never takes the owner lock, so it cannot disturb a server starting up.
    """
    record = read_owner(root)
    return record if record is not None and record.is_alive() else None


class StoreOwnership:
    """The owner lock held by a serving Runner, with its record; `release()` gives both up."""

    def __init__(self, root: Path, lock: FileLock, record: OwnerRecord) -> None:
        self.root = Path(root)
        self.record = record
        self._lock = lock

    def release(self) -> None:
        """Remove the record, then the lock (a reader never sees our record without it)."""
        if not self._lock.is_locked:
            return
        try:
            current = read_owner(self.root)
            if current is not None and current.pid == self.record.pid:
                (self.root / OWNER_FILE).unlink(missing_ok=True)
        finally:
            self._lock.release(force=True)

    def __enter__(self) -> StoreOwnership:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_store(
    root: Path, host: str, port: int, *, scheme: str = "http", wait_s: float = 900.0
) -> StoreOwnership:
    """Take the store for a serving Runner, or StoreError 9999 naming the server that has it.

    A live server owning the store is refused at once. A CLI command changing the store
    directly holds the lock only for that change, so it is waited for (up to `wait_s`).
    """
    root = Path(root).absolute()
    lock = _lock(root)
    deadline = time.monotonic() + wait_s
    while not _try(lock):
        owner = live_owner(root)
        if owner is not None:
            raise StoreError(
                UNKNOWN_ERROR,
                f"the store {root} is owned by {owner.describe()}; stop it first, or serve "
                "another store (--store)",
            )
        if time.monotonic() >= deadline:
            raise StoreError(
                UNKNOWN_ERROR,
                f"the store {root} is busy: a command changing it did not finish in {wait_s:.0f} s",
            )
        time.sleep(_POLL_S)
    try:
        since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        record = OwnerRecord(**identity(), host=host, port=port, scheme=scheme, since=since)
        atomic_write_json(root / OWNER_FILE, record.to_json())
    except BaseException:
        lock.release(force=True)
        raise
    return StoreOwnership(root, lock, record)


@contextmanager
def change_access(root: Path, wait_s: float = 900.0) -> Iterator[OwnerRecord | None]:
    """How a command may change the store: directly (yields None, the owner lock held for the
    block) or through the server that owns it (yields its record; nothing held)."""
    root = Path(root).absolute()
    lock = _lock(root)
    deadline = time.monotonic() + wait_s
    while not _try(lock):
        owner = live_owner(root)
        if owner is not None:
            yield owner
            return
        # another command is changing the store directly, or a server is writing its record
        if time.monotonic() >= deadline:
            raise StoreError(
                UNKNOWN_ERROR,
                f"the store {root} is busy: its owner lock is not free after "
                f"{wait_s:.0f} s and no server is recorded as its owner",
            )
        time.sleep(_POLL_S)
    try:
        yield None
    finally:
        lock.release(force=True)
