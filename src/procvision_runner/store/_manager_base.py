"""What every PackageManager flow shares: the store, the Runner, the flow wrapper and warm-up."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.version import InvalidVersion, Version

from procvision_algorithm_sdk.contract import Problem
from procvision_algorithm_sdk.errors import (
    INSTALL_FAILED,
    INVALID_PARAMS,
    ProcVisionError,
)
from procvision_algorithm_sdk.generation import EXECUTE_ONLY

from ..config import unknown_keys_message
from ..legacy_transport import TRANSPORT_FILES, TRANSPORT_SHM
from . import signing
from .layout import (
    GONE_SUFFIX,
    INSTALL_MARKER,
    REPLACED_ZIP,
    TRASH_PREFIX,
    PackageStore,
    _remove,
)
from .lock import StoreError
from .registry import Registry, fsync_dir
from .venv import venv_python
from .version_leases import VersionLeases
from .zipcheck import ZipLimits

if TYPE_CHECKING:
    from procvision_runner.config import RunnerConfig
    from procvision_runner.runner import PackageKey, Runner


RESERVED = ("venv/", INSTALL_MARKER, REPLACED_ZIP)


SDK_WHEEL_DIR = "sdk"  # <store>/sdk: the wheel of the Runner's SDK used in place of a bundled one


@dataclass
class StoreConfig:
    """Store settings (the `[store]` table of the config file)."""

    keep_versions: int = 3  # per package name; bound versions are always kept
    signature_policy: str = "lenient"  # "strict": unsigned packages are refused
    trusted_keys_dir: str | None = None  # default <store>/trusted_keys
    python: str | None = None  # interpreter the venvs are built with; default this one
    install_timeout_s: float = 900.0  # venv build deadline
    lock_timeout_s: float = 900.0
    drain_timeout_s: float = 30.0  # old version's in-flight calls at switch/deactivate
    limits: ZipLimits = dataclasses.field(default_factory=ZipLimits)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> StoreConfig:
        """Build from a mapping; unknown keys are an error."""
        known = [f.name for f in dataclasses.fields(cls)]
        problem = unknown_keys_message("store config", values, known)
        if problem:
            raise StoreError(INVALID_PARAMS, problem)
        kwargs = dict(values)
        if isinstance(kwargs.get("limits"), dict):
            fields = [f.name for f in dataclasses.fields(ZipLimits)]
            problem = unknown_keys_message("store.limits config", kwargs["limits"], fields)
            if problem:
                raise StoreError(INVALID_PARAMS, problem)
            kwargs["limits"] = ZipLimits(**kwargs["limits"])
        cfg = cls(**kwargs)
        if cfg.signature_policy not in signing.POLICIES:
            raise StoreError(INVALID_PARAMS, f"signature_policy must be one of {signing.POLICIES}")
        if not isinstance(cfg.keep_versions, int) or cfg.keep_versions < 1:
            raise StoreError(INVALID_PARAMS, "keep_versions must be a positive integer")
        return cfg


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _first_code(problems: list[Problem]) -> str:
    return problems[0].code if problems else INSTALL_FAILED


def _problems_text(problems: list[Problem], limit: int = 6) -> str:
    text = "; ".join(f"{p.where}: {p.message}" for p in problems[:limit])
    if len(problems) > limit:
        text += f"; and {len(problems) - limit} more"
    return text


def _version_key(version: str) -> tuple[int, Any]:
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _serves(entry: dict, pid: str) -> bool:
    """Whether a registry entry may be bound to `pid`: any pid for an execute-only package."""
    return entry.get("api") == EXECUTE_ONLY or pid in entry.get("supported_pids", [])


class ManagerBase:
    """The store and Runner a PackageManager works on, and the helpers its flows share."""

    def __init__(
        self,
        store: PackageStore,
        runner: Runner | None = None,
        *,
        config: StoreConfig | None = None,
        runner_config: RunnerConfig | None = None,
        role: str = "runner",
    ) -> None:
        self.store = store
        self.runner = runner
        self.config = config or StoreConfig()
        self.runner_config = runner_config
        # what this process's Runner runs, visible to other processes (uninstall, prune)
        self.leases = VersionLeases(store.root, store.lock, role)
        if not store._opened:
            store.open()

    def close(self) -> None:
        """Give up this manager's leases (call once its Runner has stopped its workers)."""
        self.leases.close()

    @property
    def python(self) -> str:
        """The interpreter venvs are built with."""
        return self.config.python or sys.executable

    @property
    def keys_dir(self) -> Path:
        """Where trusted public keys are read from."""
        if self.config.trusted_keys_dir:
            return Path(self.config.trusted_keys_dir)
        return self.store.trusted_keys

    @contextmanager
    def _action(
        self, action: str, name: str | None = None, version: str | None = None, pids=None
    ) -> Iterator[dict]:
        """Hold the lock, and write exactly one audit line for the action's outcome."""
        ctx: dict[str, Any] = {"name": name, "version": version, "pids": list(pids or [])}
        with self.store.lock.held():
            try:
                yield ctx
            except StoreError as exc:
                self.store.audit.record(
                    action,
                    "refused",
                    package=ctx["name"],
                    version=ctx["version"],
                    pids=ctx["pids"],
                    error_code=exc.error_code,
                    message=exc.message,
                )
                raise
            except BaseException as exc:
                self.store.audit.record(
                    action,
                    "failed",
                    package=ctx["name"],
                    version=ctx["version"],
                    pids=ctx["pids"],
                    error_code=INSTALL_FAILED if action == "install" else "9999",
                    message=f"{type(exc).__name__}: {exc}",
                )
                if isinstance(exc, Exception) and not isinstance(exc, ProcVisionError):
                    code = INSTALL_FAILED if action == "install" else "9999"
                    raise StoreError(code, f"{action} failed: {exc}") from exc
                raise
            self.store.audit.record(
                action,
                "ok",
                package=ctx["name"],
                version=ctx["version"],
                pids=ctx["pids"],
                message=ctx.get("message", ""),
            )

    def _entry(self, reg: Registry, name: str, version: str) -> dict:
        entry = reg.find(name, version)
        if entry is None:
            raise StoreError(INVALID_PARAMS, f"{name} {version} is not installed")
        if entry.get("state") == "invalid":
            raise StoreError(
                INSTALL_FAILED,
                f"{name} {version} is invalid ({entry.get('invalid_reason', 'unknown')}); "
                "reinstall it",
            )
        return entry

    def _new_runner(self) -> Runner:
        from procvision_runner.runner import Runner

        return Runner(self.runner_config)

    def _loaded(self, key: PackageKey) -> bool:
        assert self.runner is not None
        return any(
            (p.get("name"), p.get("version")) == (key.name, key.version)
            and p.get("state") not in ("STOPPED", "FAILED")
            for p in self.runner.packages()
        )

    @staticmethod
    def _require_ready(runner: Runner, key: PackageKey) -> None:
        """Runner.load keeps a package that failed to start in state FAILED: refuse it here."""
        for p in runner.packages():
            if (p.get("name"), p.get("version")) == (key.name, key.version):
                if p.get("state") == "READY":
                    return
                err = p.get("error") or {}
                raise StoreError(
                    INSTALL_FAILED,
                    f"{key.name} {key.version} did not start ({p.get('state')}): "
                    f"{err.get('message', 'no workers ready')} (code {err.get('error_code')})",
                )
        raise StoreError(INSTALL_FAILED, f"{key.name} {key.version} is not loaded")

    def _warm(self, name: str, version: str) -> PackageKey | None:
        """Start and warm a version's workers: kept in our runner, or proved and stopped."""
        path = self.store.package_dir(name, version)
        python = str(venv_python(path))
        transport = _transport_of(path)
        try:
            if self.runner is not None:
                from procvision_runner.runner import PackageKey

                key = PackageKey(name, version)
                if not self._loaded(key):
                    with self.store.lock.held():
                        # still installed now, and leased before a worker starts from it
                        self._entry(self.store.load_registry(), name, version)
                        self.leases.hold(name, version)
                    key = self.runner.load(path, python=python, activate=False, transport=transport)
                try:
                    self._require_ready(self.runner, key)
                except StoreError:
                    self.runner.unload(key, drain_timeout_s=1.0)
                    self.leases.release(name, version)
                    raise
                return key
            with self._new_runner() as runner:
                key = runner.load(path, python=python, activate=False, transport=transport)
                self._require_ready(runner, key)
            return None
        except ProcVisionError as exc:
            raise StoreError(
                INSTALL_FAILED, f"{name} {version} did not start: {exc.message or exc}"
            ) from exc

    def _release_unrouted(self, keys: Iterable[PackageKey]) -> None:
        if self.runner is None:
            return
        routed = set(self.runner.routes().values())
        for key in set(keys):
            if key not in routed and self._loaded(key):
                self.runner.unload(key, drain_timeout_s=self.config.drain_timeout_s)
                self.leases.release(key.name, key.version)

    def _retire(self, name: str, version: str) -> Path | None:
        """Rename a version's directory to a `-gone` trash name (before the registry write)."""
        path = self.store.package_dir(name, version)
        if not path.exists():
            return None
        trash = path.parent / f"{TRASH_PREFIX}{version}-{secrets.token_hex(4)}{GONE_SUFFIX}"
        os.rename(path, trash)
        fsync_dir(path.parent)
        return trash

    def _discard(self, name: str, version: str, trash: Path | None) -> None:
        """Remove a retired version's files once the registry no longer names it."""
        if trash is not None:
            _remove(trash)
        self.store.zip_path(name, version).unlink(missing_ok=True)
        with suppress(OSError):
            self.store.package_dir(name, version).parent.rmdir()

    def _unroute(self, pids: list[str]) -> None:
        if self.runner is None:
            return
        routes = self.runner.routes()
        keys = [routes[p] for p in pids if p in routes]
        self.runner.route([p for p in pids if p in routes], None)
        self._release_unrouted(keys)


def _transport_of(path: Path) -> str:
    """How the Runner hands frames to a deployed version (its install marker says)."""
    try:
        marker = json.loads((path / INSTALL_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return TRANSPORT_SHM
    transport = marker.get("transport") if isinstance(marker, dict) else None
    return transport if transport == TRANSPORT_FILES else TRANSPORT_SHM
