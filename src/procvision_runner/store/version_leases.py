"""Version leases: which live processes run which deployed versions (kept from removal).

    <root>/leases/<pid>-<rand>.json   {pid, start_ticks, boot_id, role, since, versions}

One file per PackageManager that drives a Runner (a serving Runner, `procvision-runner
inspect`, an embedding program). A version is leased before its workers start and released
after they stopped. Uninstall and prune read the leases of other live processes (pid, start
time and boot id must match; files of dead processes are removed on the way). Every write is
atomic and made under the store lock, like every other store write.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .liveness import identity, is_alive
from .lock import StoreLock
from .registry import atomic_write_json

__all__ = ["VersionLeases", "describe_users"]

LEASES_DIR = "leases"


class VersionLeases:
    """This manager's lease file, and the question who else runs a version."""

    def __init__(self, root: Path, lock: StoreLock, role: str) -> None:
        self.dir = Path(root) / LEASES_DIR
        self.lock = lock
        self.role = role
        self.path = self.dir / f"{os.getpid()}-{secrets.token_hex(4)}.json"
        self._versions: set[tuple[str, str]] = set()
        self._since = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def hold(self, name: str, version: str) -> None:
        """Record that this process runs (or is about to start) `name version`."""
        with self.lock.held():
            self._versions.add((name, version))
            self._write()

    def release(self, name: str, version: str) -> None:
        """Record that this process's workers of `name version` have stopped."""
        if (name, version) not in self._versions:
            return
        with self.lock.held():
            self._versions.discard((name, version))
            self._write()

    def close(self) -> None:
        """Drop this process's lease file (its Runner is closed)."""
        if not self._versions and not self.path.exists():
            return
        with self.lock.held():
            self._versions.clear()
            self.path.unlink(missing_ok=True)

    def _write(self) -> None:
        if not self._versions:
            self.path.unlink(missing_ok=True)
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        doc = {
            **identity(),
            "role": self.role,
            "since": self._since,
            "versions": sorted([n, v] for n, v in self._versions),
        }
        atomic_write_json(self.path, doc)

    def others(self) -> list[dict[str, Any]]:
        """Lease documents of other live holders (call under the store lock: removes dead ones)."""
        out: list[dict[str, Any]] = []
        if not self.dir.is_dir():
            return out
        for path in sorted(self.dir.glob("*.json")):
            if path == self.path:
                continue
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                doc = None
            if not isinstance(doc, dict) or not is_alive(doc):
                path.unlink(missing_ok=True)  # its process is gone: the lease with it
                continue
            out.append(doc)
        return out

    def users(self, name: str, version: str) -> list[dict[str, Any]]:
        """Other live processes that run `name version`."""
        return [d for d in self.others() if [name, version] in d.get("versions", [])]

    def in_use(self) -> set[tuple[str, str]]:
        """Every version a live process runs, this one included."""
        used = set(self._versions)
        for doc in self.others():
            for item in doc.get("versions", []):
                if isinstance(item, list) and len(item) == 2:
                    used.add((str(item[0]), str(item[1])))
        return used


def describe_users(users: list[dict[str, Any]]) -> str:
    """`pid 123 (serve, since T), pid 456 (inspect, since T)` for messages."""
    return ", ".join(
        f"pid {u.get('pid')} ({u.get('role', '?')}, since {u.get('since', '?')})" for u in users
    )
