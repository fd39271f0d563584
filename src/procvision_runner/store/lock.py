"""The store's one inter-process lock: every write to the store happens while holding it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from procvision_algorithm_sdk.errors import UNKNOWN_ERROR, ProcVisionError


class StoreError(ProcVisionError):
    """A store operation refused or failed; `.error_code` is 2001..2007, 1001, 1006 or 9999."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, error_code=code)


class StoreLock:
    """A file lock on `<store>/.lock`; re-entrant within one process, exclusive across them."""

    def __init__(self, path: Path, timeout_s: float = 900.0) -> None:
        self.path = path
        self.timeout_s = timeout_s
        # thread_local=False: the manager may take it in one thread and the HTTP service in
        # another; re-entrancy is per process, exclusion across processes is what matters.
        self._lock = FileLock(str(path), thread_local=False)

    @contextmanager
    def held(self, timeout_s: float | None = None) -> Iterator[None]:
        """Hold the lock for the block; StoreError 9999 if not had before the deadline."""
        wait = self.timeout_s if timeout_s is None else timeout_s
        try:
            self._lock.acquire(timeout=wait)
        except Timeout as exc:
            raise StoreError(
                UNKNOWN_ERROR, f"the store is busy: lock {self.path} not free after {wait:.0f} s"
            ) from exc
        try:
            yield
        finally:
            self._lock.release()

    @property
    def is_held(self) -> bool:
        """Whether this process holds the lock now."""
        return bool(self._lock.is_locked)
