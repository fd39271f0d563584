"""registry.json: the one source of truth for installed packages and pid bindings.

Written atomically (temporary file, fsync, rename, fsync of the directory) and mirrored to a
last-good copy `registry.json.bak`. The `active/<pid>.json` files are mirrors of `active`
here, rewritten from it on every change and at start-up, because a set of per-pid files
cannot flip atomically together and a switch of several pids must.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = 1


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (a rename is durable only after this)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so readers see either the old or the new file, never a part."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, value: Any) -> None:
    """Atomically write a JSON document (sorted keys, trailing newline)."""
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


class RegistryCorrupt(ValueError):
    """registry.json cannot be parsed or does not have the registry's shape."""


@dataclass
class Registry:
    """Installed packages, pid bindings and per-pid activation history."""

    packages: list[dict] = field(default_factory=list)
    active: dict[str, dict] = field(default_factory=dict)  # pid -> {name, version, activated_at}
    history: dict[str, list[dict]] = field(
        default_factory=dict
    )  # pid -> [{name, version}] old..new

    def find(self, name: str, version: str) -> dict | None:
        """The entry of one installed version, or None."""
        for entry in self.packages:
            if entry.get("name") == name and entry.get("version") == version:
                return entry
        return None

    def bound_pids(self, name: str, version: str) -> list[str]:
        """The pids bound to this version."""
        return sorted(
            pid
            for pid, b in self.active.items()
            if b.get("name") == name and b.get("version") == version
        )

    def to_json(self) -> dict:
        """The document written to registry.json."""
        return {
            "format": FORMAT,
            "packages": self.packages,
            "active": self.active,
            "history": self.history,
        }

    @classmethod
    def from_json(cls, doc: object) -> Registry:
        """Parse and shape-check a registry document (RegistryCorrupt when it is not one)."""
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise RegistryCorrupt("not a registry document of format 1")
        packages = doc.get("packages")
        active = doc.get("active")
        history = doc.get("history", {})
        if not isinstance(packages, list) or not all(
            isinstance(p, dict)
            and isinstance(p.get("name"), str)
            and isinstance(p.get("version"), str)
            for p in packages
        ):
            raise RegistryCorrupt("packages must be a list of {name, version, ...}")
        if not isinstance(active, dict) or not all(
            isinstance(k, str) and isinstance(v, dict) and "name" in v and "version" in v
            for k, v in active.items()
        ):
            raise RegistryCorrupt("active must map pid -> {name, version, activated_at}")
        if not isinstance(history, dict) or not all(isinstance(v, list) for v in history.values()):
            raise RegistryCorrupt("history must map pid -> list")
        return cls(packages=packages, active=active, history=history)

    @classmethod
    def read(cls, path: Path) -> Registry:
        """Read one registry file (RegistryCorrupt on bad JSON or shape; OSError if unreadable)."""
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RegistryCorrupt(f"{path.name} is not valid JSON: {exc}") from exc
        return cls.from_json(doc)
