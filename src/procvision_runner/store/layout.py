"""PackageStore: the store's directories, its registry, lock and audit log, and start-up reconcile.

Layout (contract section 8)::

    <root>/.lock                      inter-process lock (filelock)
    <root>/registry.json(.bak)        installed packages, pid bindings, history; last good copy
    <root>/zips/<name>-<version>.zip  archived originals
    <root>/deployed/<name>/<version>/ unpacked package with its own venv/
    <root>/active/<pid>.json          {name, version, activated_at}: mirrors of registry "active"
    <root>/logs/audit.jsonl           one JSON line per action
    <root>/trusted_keys/*.pub         Ed25519 public keys (PEM) for SIGNATURE
    <root>/tmp/                       scratch space of a running action
    <root>/.owner.lock, owner.json    the serving Runner that owns the store (owner.py)
    <root>/leases/                    versions live processes run (version_leases.py)

Temporary names used by an action in progress: `deployed/<name>/.tmp-<version>-<rand>/`
(being built), `deployed/<name>/.trash-<version>-<rand>/` (an old version being replaced, its
zip inside as `.procvision_replaced.zip`) and `.trash-<version>-<rand>-gone/` (a version being
uninstalled or pruned). They only exist while an action holds the lock, so reconcile (run under
the lock) finds them only when whoever made them died, and finishes or undoes the action by
what the registry says: the registry write is each action's point of no return.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from procvision_algorithm_sdk._process import pid_alive
from procvision_algorithm_sdk.contract import is_safe_name
from procvision_algorithm_sdk.errors import UNKNOWN_ERROR

from .audit import AuditLog
from .lock import StoreError, StoreLock
from .registry import Registry, RegistryCorrupt, atomic_write_bytes, atomic_write_json

INSTALL_MARKER = ".procvision_install.json"  # the registry entry, written before the final rename
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
GONE_SUFFIX = "-gone"  # trash of an uninstall or prune (else of a replace)
REPLACED_ZIP = ".procvision_replaced.zip"  # a replaced version's zip, kept in its trash
DEFAULT_HOME = ".procvision"


def default_root() -> Path:
    """`$PROCVISION_HOME`, else `.procvision/` in the current directory."""
    env = os.environ.get("PROCVISION_HOME")
    return Path(env) if env else Path.cwd() / DEFAULT_HOME


class PackageStore:
    """One store on disk. Construct it, then `open()` (creates the layout and reconciles)."""

    def __init__(self, root: str | Path, *, lock_timeout_s: float = 900.0) -> None:
        self.root = Path(root).absolute()
        self.zips = self.root / "zips"
        self.deployed = self.root / "deployed"
        self.active_dir = self.root / "active"
        self.logs = self.root / "logs"
        self.trusted_keys = self.root / "trusted_keys"
        self.tmp = self.root / "tmp"
        self.registry_path = self.root / "registry.json"
        self.backup_path = self.root / "registry.json.bak"
        self.local_socket = self.root / "runner.sock"  # the serving Runner's (service.local_socket)
        self.lock = StoreLock(self.root / ".lock", timeout_s=lock_timeout_s)
        self.audit = AuditLog(self.logs / "audit.jsonl")
        self._opened = False

    # -- paths -------------------------------------------------------------------------------

    def package_dir(self, name: str, version: str) -> Path:
        """`deployed/<name>/<version>` (name and version must be safe path components)."""
        if not (is_safe_name(name) and is_safe_name(version)):
            raise StoreError("1006", f"unsafe package name or version: {name!r} {version!r}")
        return self.deployed / name / version

    def zip_path(self, name: str, version: str) -> Path:
        """`zips/<name>-<version>.zip`."""
        self.package_dir(name, version)  # same safety check
        return self.zips / f"{name}-{version}.zip"

    def venv_python(self, name: str, version: str) -> Path:
        """The interpreter of an installed version's venv."""
        from .venv import venv_python

        return venv_python(self.package_dir(name, version))

    # -- open and reconcile ------------------------------------------------------------------

    def open(self, *, reconcile: bool = True) -> PackageStore:
        """Create the layout if needed and reconcile the registry with the disk (under the lock).

        `reconcile=False` is for queries while a server owns the store: it reconciled at its
        start, and a query must not wait for the lock behind one of its installs.
        """
        for d in (self.zips, self.deployed, self.active_dir, self.logs, self.trusted_keys):
            d.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        if reconcile:
            with self.lock.held():
                self.reconcile()
        self._opened = True
        return self

    def reconcile(self) -> list[str]:
        """Bring disk and registry into agreement after a crash; returns what it changed."""
        from .venv import kill_recorded_groups

        changes: list[str] = [
            f"killed process group {g} of an interrupted install"
            for g in kill_recorded_groups(self.tmp)
        ]
        for child in self.tmp.iterdir():
            if _owner_alive(child.name):
                continue  # e.g. the HTTP service's upload-<pid>-<rand>.zip, still being written
            _remove(child)
            changes.append(f"removed tmp/{child.name}")
        for d in (self.root, self.active_dir, self.zips):
            for child in d.iterdir():
                if child.name.startswith(".") and ".tmp-" in child.name:
                    _remove(child)
                    changes.append(f"removed {child.relative_to(self.root)}")
        reg = self.load_registry()
        dirty = False
        for name_dir in sorted(p for p in self.deployed.iterdir() if p.is_dir()):
            for child in sorted(name_dir.iterdir()):
                rel = str(child.relative_to(self.root))
                if child.name.startswith(TMP_PREFIX):
                    _remove(child)
                    changes.append(f"removed unfinished install {rel}")
                elif child.name.startswith(TRASH_PREFIX):
                    changes.append(self._settle_trash(reg, name_dir, child))
        for name_dir in sorted(p for p in self.deployed.iterdir() if p.is_dir()):
            for child in sorted(name_dir.iterdir()):
                if reg.find(name_dir.name, child.name) is not None:
                    continue
                marker = child / INSTALL_MARKER
                entry = _read_marker(marker)
                if (
                    entry
                    and entry.get("name") == name_dir.name
                    and entry.get("version") == child.name
                ):
                    # the install finished everything but the registry write: adopt it
                    entry["state"] = "deployed"
                    reg.packages.append(entry)
                    dirty = True
                    changes.append(f"adopted {child.relative_to(self.root)}")
                else:
                    _remove(child)
                    changes.append(f"removed unregistered {child.relative_to(self.root)}")
            if not any(name_dir.iterdir()):
                name_dir.rmdir()
        for entry in reg.packages:
            path = self.deployed / entry["name"] / entry["version"]
            ok = path.is_dir() and (path / INSTALL_MARKER).is_file()
            if not ok and entry.get("state") != "invalid":
                entry["state"] = "invalid"
                entry["invalid_reason"] = "deployed directory missing"
                dirty = True
                changes.append(f"marked {entry['name']} {entry['version']} invalid")
            elif ok and entry.get("state") == "invalid":
                entry["state"] = "deployed"
                entry.pop("invalid_reason", None)
                dirty = True
        kept_zips = {f"{e['name']}-{e['version']}.zip" for e in reg.packages}
        for z in self.zips.iterdir():
            if z.name not in kept_zips:
                _remove(z)
                changes.append(f"removed orphan zips/{z.name}")
        if dirty:
            self.save_registry(reg)
        else:
            self.write_active_mirror(reg)
        for change in changes:
            self.audit.record("reconcile", "ok", message=change)
        return changes

    def _settle_trash(self, reg: Registry, name_dir: Path, trash: Path) -> str:
        """Undo or finish the replace/uninstall/prune that died leaving `trash`."""
        rel = str(trash.relative_to(self.root))
        stem = trash.name[len(TRASH_PREFIX) :]
        gone = stem.endswith(GONE_SUFFIX)
        version = (
            stem.removesuffix(GONE_SUFFIX).rsplit("-", 1)[0] if gone else stem.rsplit("-", 1)[0]
        )
        entry = reg.find(name_dir.name, version)
        target = name_dir / version
        if entry is not None and is_safe_name(version):
            if gone and not target.exists():
                os.rename(trash, target)  # the registry was not written: not uninstalled
                return f"restored {rel} to {target.relative_to(self.root)}"
            if not gone:
                marker = _read_marker(target / INSTALL_MARKER)
                new_is_registered = marker is not None and all(
                    marker.get(k) == entry.get(k) for k in ("created_ns", "sha256")
                )
                if not new_is_registered:
                    # the replacing build never reached the registry: the old one comes back
                    _remove(target)
                    os.rename(trash, target)
                    old_zip = target / REPLACED_ZIP
                    if old_zip.exists():
                        os.replace(old_zip, self.zip_path(name_dir.name, version))
                    return f"restored replaced {rel} to {target.relative_to(self.root)}"
        _remove(trash)
        return f"removed {rel}"

    # -- registry ----------------------------------------------------------------------------

    def read_registry(self) -> Registry:
        """Read the registry without the lock, for queries; never writes.

        Safe because every write is an atomic rename: a reader sees the old or the new file.
        When registry.json is unusable its last good copy is read instead; only when both are
        does this fall back to `load_registry` under the lock (recovery, or its clear refusal).
        """
        try:
            return Registry.read(self.registry_path)
        except FileNotFoundError:
            if not self.backup_path.exists():
                return Registry()
        except (RegistryCorrupt, OSError):
            pass
        try:
            return Registry.read(self.backup_path)
        except (RegistryCorrupt, OSError):
            with self.lock.held():
                return self.load_registry()

    def load_registry(self) -> Registry:
        """Read registry.json; recover it from the last good copy when corrupt, else refuse."""
        try:
            return Registry.read(self.registry_path)
        except FileNotFoundError:
            if not self.backup_path.exists():
                return Registry()
            problem = "registry.json is missing"
        except (RegistryCorrupt, OSError) as exc:
            problem = str(exc)
        try:
            reg = Registry.read(self.backup_path)
        except (RegistryCorrupt, OSError) as exc:
            raise StoreError(
                UNKNOWN_ERROR,
                f"{self.registry_path} is unusable ({problem}) and its last good copy "
                f"{self.backup_path.name} too ({exc}); refusing to start with an empty registry. "
                "Restore one of them by hand.",
            ) from exc
        if self.registry_path.exists():
            shutil.copyfile(self.registry_path, self.root / f"registry.json.corrupt-{os.getpid()}")
        atomic_write_json(self.registry_path, reg.to_json())
        self.audit.record("recover-registry", "ok", message=f"{problem}; restored from .bak")
        return reg

    def save_registry(self, reg: Registry) -> None:
        """Write registry.json, then its last good copy, then the active/ mirrors."""
        data = (json.dumps(reg.to_json(), indent=2, sort_keys=True) + "\n").encode()
        atomic_write_bytes(self.registry_path, data)
        atomic_write_bytes(self.backup_path, data)
        self.write_active_mirror(reg)

    def write_active_mirror(self, reg: Registry) -> None:
        """Make `active/<pid>.json` match the registry's bindings exactly."""
        want = {f"{pid}.json": b for pid, b in reg.active.items() if is_safe_name(pid)}
        for f in self.active_dir.iterdir():
            if f.name not in want:
                _remove(f)
        for fname, binding in want.items():
            doc = {
                "name": binding["name"],
                "version": binding["version"],
                "activated_at": binding.get("activated_at"),
            }
            path = self.active_dir / fname
            try:
                if json.loads(path.read_text(encoding="utf-8")) == doc:
                    continue
            except (OSError, ValueError):
                pass
            atomic_write_json(path, doc)


def _owner_alive(name: str) -> bool:
    """Whether a tmp/ entry named `<what>-<pid>-<rest>` belongs to a process still running."""
    match = re.match(r"^[A-Za-z]+-(\d+)-", name)
    return match is not None and pid_alive(int(match.group(1)))


def _read_marker(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
