"""PackageManager: install, activate, switch, rollback, deactivate, uninstall (contract section 8).

Every flow takes the store lock for its whole length, so flows from several processes run one
after another; the queries (`list`, `active`) read registry.json without it, so they never
wait for an install. Registry changes are single atomic writes of registry.json; the workers of a
version are started and warm before a mapping that names it is written. With a `runner` (the
HTTP service) those workers stay and the Runner's routes follow the registry; without one (the
`procvision-runner` CLI) a short-lived Runner proves the version starts and warms, then stops.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import secrets
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.version import InvalidVersion, Version

from procvision_algorithm_sdk.contract import Problem, check_manifest
from procvision_algorithm_sdk.errors import (
    ACTIVATION_CONFLICT,
    INSTALL_FAILED,
    INVALID_PARAMS,
    INVALID_PID,
    INVALID_ZIP,
    UNSAFE_UNINSTALL,
    ProcVisionError,
)
from procvision_algorithm_sdk.generation import EXECUTE_ONLY, LIFECYCLE, manifest_api

from . import signing
from .closure import check_closure_in_zip
from .crashpoints import crash_point
from .layout import (
    GONE_SUFFIX,
    INSTALL_MARKER,
    REPLACED_ZIP,
    TMP_PREFIX,
    TRASH_PREFIX,
    PackageStore,
    _remove,
)
from .lock import StoreError
from .registry import Registry, atomic_write_json, fsync_dir
from .sdk_substitute import bundled_sdk, runner_sdk_wheel, substitute_sdk, substitution_note
from .venv import build_venv, venv_python
from .wheels import TargetEnv, check_env_file, check_requirements
from .zipcheck import ZipLayout, ZipLimits, check_zip, extract_zip, safe_name

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
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise StoreError(INVALID_PARAMS, f"unknown store config keys: {unknown}")
        kwargs = dict(values)
        if isinstance(kwargs.get("limits"), dict):
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


class PackageManager:
    """The lifecycle flows on one store, optionally driving a live Runner."""

    def __init__(
        self,
        store: PackageStore,
        runner: Runner | None = None,
        *,
        config: StoreConfig | None = None,
        runner_config: RunnerConfig | None = None,
    ) -> None:
        self.store = store
        self.runner = runner
        self.config = config or StoreConfig()
        self.runner_config = runner_config
        if not store._opened:
            store.open()

    # -- helpers -----------------------------------------------------------------------------

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
        try:
            if self.runner is not None:
                from procvision_runner.runner import PackageKey

                key = PackageKey(name, version)
                if not self._loaded(key):
                    key = self.runner.load(path, python=python, activate=False)
                try:
                    self._require_ready(self.runner, key)
                except StoreError:
                    self.runner.unload(key, drain_timeout_s=1.0)
                    raise
                return key
            with self._new_runner() as runner:
                key = runner.load(path, python=python, activate=False)
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

    def _check_pids(self, entry: dict, pids: list[str]) -> list[str]:
        if not pids:
            raise StoreError(INVALID_PARAMS, "give at least one --pid")
        out: list[str] = []
        for pid in pids:
            if not safe_name(pid):
                raise StoreError(INVALID_PID, f"{pid!r} is not a valid pid")
            if not _serves(entry, pid):
                raise StoreError(
                    INVALID_PID,
                    f"{pid} is not in {entry['name']} {entry['version']}'s supported_pids "
                    f"{entry.get('supported_pids')}",
                )
            if pid not in out:
                out.append(pid)
        return out

    # -- install -----------------------------------------------------------------------------

    def check(self, zip_path: str | Path) -> tuple[ZipLayout | None, list[Problem], bool]:
        """All checks an install makes before unpacking: (layout, problems, signed)."""
        layout, problems = check_zip(
            zip_path, self.config.limits, free_bytes=shutil.disk_usage(self.store.root).free
        )
        if layout is None:
            return None, problems, False
        for rel in layout.files:
            if any(rel == r or rel.startswith(r) for r in RESERVED):
                problems.append(Problem(rel, INVALID_ZIP, f"{rel} is a name the store reserves"))
        try:
            target = TargetEnv.for_python(self.python)
        except RuntimeError as exc:
            return layout, [*problems, Problem("python", INSTALL_FAILED, str(exc))], False
        problems.extend(check_env_file(layout.env, target))
        req_problems = check_requirements(layout.requirements, layout.wheels, target)
        if not req_problems and not problems:  # the resolver, once the cheap checks pass
            req_problems = check_closure_in_zip(
                zip_path, layout.members, layout.wheels, layout.requirements, target
            )
        problems.extend(req_problems)
        signed, sig_problems = signing.verify_package(
            zip_path, layout, self.keys_dir, self.config.signature_policy
        )
        problems.extend(sig_problems)
        return layout, problems, signed

    def _substitute_sdk(self, work: Path, layout: ZipLayout) -> str | None:
        """Put the Runner's SDK in place of a bundled original one; the note for the registry."""
        found = bundled_sdk(layout.wheels)
        if found is None:
            return None
        ours = runner_sdk_wheel(self.store.root / SDK_WHEEL_DIR)
        substitute_sdk(work, sorted({"requirements.txt", layout.requirements_file}), found[0], ours)
        return substitution_note(found[1])

    def validate_zip(self, zip_path: str | Path) -> dict:
        """Run the install checks only; a report in the `procvision-cli validate` shape."""
        layout, problems, signed = self.check(zip_path)
        checks = [
            {
                "name": f"{p.code} {p.where}",
                "result": "FAIL",
                "message": p.message,
                "error_code": p.code,
            }
            for p in problems
        ]
        if not problems:
            assert layout is not None
            checks.append(
                {
                    "name": "package",
                    "result": "PASS",
                    "message": f"{layout.name} {layout.version}: zip, manifest, wheels"
                    + (", signature" if signed else "")
                    + " ok",
                }
            )
        failed = sum(1 for c in checks if c["result"] == "FAIL")
        return {
            "summary": {
                "status": "FAIL" if failed else "PASS",
                "passed": len(checks) - failed,
                "failed": failed,
            },
            "checks": checks,
        }

    def install(self, zip_path: str | Path, *, replace: bool = False) -> dict:
        """Check, unpack, build the venv, smoke it, rename into place, register; the entry."""
        zip_path = Path(zip_path)
        with self._action("install") as ctx:
            ctx["message"] = str(zip_path)
            layout, problems, signed = self.check(zip_path)
            if layout is not None:
                ctx["name"], ctx["version"] = layout.name, layout.version
            if problems or layout is None:
                raise StoreError(_first_code(problems), _problems_text(problems))
            name, version = layout.name, layout.version
            reg = self.store.load_registry()
            old = reg.find(name, version)
            if old is not None:
                bound = reg.bound_pids(name, version)
                if bound:
                    raise StoreError(
                        UNSAFE_UNINSTALL,
                        f"{name} {version} is installed and bound to {bound}; it cannot be "
                        "replaced while active",
                    )
                if not replace:
                    raise StoreError(
                        INSTALL_FAILED,
                        f"{name} {version} is already installed (use --replace to reinstall it)",
                    )
            entry, replaced = self._build(zip_path, layout, signed, replace=old is not None)
            reg = self.store.load_registry()
            reg.packages = [e for e in reg.packages if (e["name"], e["version"]) != (name, version)]
            reg.packages.append(entry)
            pruned = self._prune(reg, name)
            try:
                # pruned versions leave their place before the registry stops naming them, so
                # a crash in between leaves them restorable (reconcile), never resurrectable
                gone = [(e, self._retire(e["name"], e["version"])) for e in pruned]
                if pruned:
                    crash_point("prune-after-trash")
                self.store.save_registry(reg)
            except BaseException:
                with suppress(Exception):
                    self.store.reconcile()  # puts the replaced and pruned versions back
                raise
            crash_point("install-after-registry")
            if replaced is not None:
                _remove(replaced)
            for e, trash in gone:
                crash_point("prune-after-registry")
                self._discard(e["name"], e["version"], trash)
                self.store.audit.record(
                    "prune", "ok", package=e["name"], version=e["version"], message="keep_versions"
                )
            return dict(entry)

    def _build(
        self, zip_path: Path, layout: ZipLayout, signed: bool, *, replace: bool
    ) -> tuple[dict, Path | None]:
        """Unpack, build and smoke a version, then rename it into place: (entry, old copy).

        With `replace` the old directory (with its zip inside) is renamed to a trash name
        first; the caller removes it once the registry names the new build. Until then a
        crash leaves reconcile able to put the old version back.
        """
        name, version = layout.name, layout.version
        final = self.store.package_dir(name, version)
        name_dir = final.parent
        name_dir.mkdir(parents=True, exist_ok=True)
        work = name_dir / f"{TMP_PREFIX}{version}-{secrets.token_hex(4)}"
        final_zip = self.store.zip_path(name, version)
        zip_tmp = self.store.zips / f".{name}-{version}.zip.tmp-{secrets.token_hex(4)}"
        trash = None
        zip_placed = False
        try:
            try:
                extract_zip(zip_path, work, layout, self.config.limits)
            except ValueError as exc:
                raise StoreError(INVALID_ZIP, f"unpacking refused: {exc}") from exc
            crash_point("install-after-extract")
            sdk_note = self._substitute_sdk(work, layout)
            vpy, _log = build_venv(
                work,
                self.python,
                self.config.install_timeout_s,
                self.store.tmp,
                requirements=layout.requirements_file,
            )
            crash_point("install-after-venv")
            info = self._smoke(work, vpy, layout.manifest)
            entry = {
                "name": name,
                "version": version,
                "supported_pids": list(layout.manifest.get("supported_pids") or []),
                "api": manifest_api(layout.manifest),
                "state": "deployed",
                "created_at": _now(),
                "created_ns": time.time_ns(),
                "path": f"deployed/{name}/{version}",
                "zip": f"zips/{name}-{version}.zip",
                "sha256": _sha256(zip_path),
                "python": self.python,
                "signed": signed,
                "info": info,
            }
            if sdk_note is not None:
                entry["sdk"] = sdk_note
            atomic_write_json(work / INSTALL_MARKER, entry)
            shutil.copyfile(zip_path, zip_tmp)
            with open(zip_tmp, "rb+") as f:
                os.fsync(f.fileno())
            crash_point("install-after-marker")
            if replace and final.exists():
                trash = name_dir / f"{TRASH_PREFIX}{version}-{secrets.token_hex(4)}"
                os.rename(final, trash)
                fsync_dir(name_dir)
                crash_point("replace-after-trash")
                if final_zip.exists():
                    os.replace(final_zip, trash / REPLACED_ZIP)
            # the zip first: a crash before the directory's rename leaves an orphan zip
            # (removed by reconcile), never a deployed directory without its zip
            os.replace(zip_tmp, final_zip)
            zip_placed = True
            fsync_dir(self.store.zips)
            os.rename(work, final)
            fsync_dir(name_dir)
            crash_point("install-after-rename")
            return entry, trash
        except BaseException:
            _remove(work)
            zip_tmp.unlink(missing_ok=True)
            if zip_placed and not final.exists():
                final_zip.unlink(missing_ok=True)
            if trash is not None and trash.exists() and not final.exists():
                os.rename(trash, final)
                if (final / REPLACED_ZIP).exists():
                    os.replace(final / REPLACED_ZIP, final_zip)
            with suppress(OSError):
                name_dir.rmdir()  # only if this install made it and left it empty
            raise

    def _smoke(self, path: Path, python: Path, manifest: dict) -> dict:
        """Start the package in a real worker (setup, get_info); its info must match."""
        from procvision_runner.runner import Runner

        cfg = self.runner_config
        if cfg is not None:
            cfg = dataclasses.replace(cfg, warmup_calls=0, workers_per_package=1)
        else:
            from procvision_runner.config import RunnerConfig

            cfg = RunnerConfig(warmup_calls=0, workers_per_package=1)
        try:
            with Runner(cfg) as runner:
                key = runner.load(path, python=str(python), activate=False)
                self._require_ready(runner, key)
                info = runner.package_info(key)
                runner.unload(key, drain_timeout_s=5.0)
        except ProcVisionError as exc:
            raise StoreError(
                INSTALL_FAILED, f"smoke test failed: {exc.message or exc} (code {exc.error_code})"
            ) from exc
        problems = check_manifest(manifest, info)
        if problems:
            raise StoreError(problems[0].code, "smoke test: " + _problems_text(problems))
        return info if isinstance(info, dict) else {}

    def _prune(self, reg: Registry, name: str) -> list[dict]:
        """Drop the oldest inactive versions of `name` beyond keep_versions (from `reg`)."""
        versions = sorted(
            (e for e in reg.packages if e["name"] == name),
            key=lambda e: (e.get("created_ns", 0), _version_key(e["version"])),
            reverse=True,
        )
        drop = [
            e
            for e in versions[self.config.keep_versions :]
            if not reg.bound_pids(e["name"], e["version"])
        ]
        gone = {(e["name"], e["version"]) for e in drop}
        reg.packages = [e for e in reg.packages if (e["name"], e["version"]) not in gone]
        for pid, hist in reg.history.items():
            reg.history[pid] = [h for h in hist if (h["name"], h["version"]) not in gone]
        return drop

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

    # -- bindings ----------------------------------------------------------------------------

    def activate(self, name: str, version: str, pids: list[str]) -> dict:
        """Bind pids to an installed version (2006 if one is bound to another version)."""
        with self._action("activate", name, version, pids) as ctx:
            reg = self.store.load_registry()
            entry = self._entry(reg, name, version)
            pids = self._check_pids(entry, list(pids))
            ctx["pids"] = pids
            for pid in pids:
                b = reg.active.get(pid)
                if b and (b["name"], b["version"]) != (name, version):
                    raise StoreError(
                        ACTIVATION_CONFLICT,
                        f"{pid} is bound to {b['name']} {b['version']}; use switch to rebind it",
                    )
            key = self._warm(name, version)
            return self._bind(reg, name, version, pids, key, record_history=True)

    def switch(self, name: str, version: str, pids: list[str]) -> dict:
        """Rebind pids to a version: start and warm it, flip, then drain and stop the old one."""
        with self._action("switch", name, version, pids) as ctx:
            reg = self.store.load_registry()
            entry = self._entry(reg, name, version)
            pids = self._check_pids(entry, list(pids))
            ctx["pids"] = pids
            key = self._warm(name, version)
            return self._bind(reg, name, version, pids, key, record_history=True)

    def _bind(
        self,
        reg: Registry,
        name: str,
        version: str,
        pids: list[str],
        key: PackageKey | None,
        *,
        record_history: bool,
    ) -> dict:
        previous: dict[str, dict] = {}
        now = _now()
        for pid in pids:
            b = reg.active.get(pid)
            if b and (b["name"], b["version"]) == (name, version):
                continue
            if b:
                previous[pid] = b
                if record_history:
                    reg.history.setdefault(pid, []).append(
                        {"name": b["name"], "version": b["version"]}
                    )
            reg.active[pid] = {"name": name, "version": version, "activated_at": now}
        self.store.save_registry(reg)
        old_keys = []
        if self.runner is not None and key is not None:
            old_routes = self.runner.routes()
            self.runner.route(pids, key)  # all pids at once
            old_keys = [old_routes[p] for p in pids if p in old_routes and old_routes[p] != key]
            self._release_unrouted(old_keys)
        return {
            "name": name,
            "version": version,
            "pids": pids,
            "previous": {
                p: {"name": b["name"], "version": b["version"]} for p, b in previous.items()
            },
            "activated_at": now,
        }

    def rollback(self, pid: str) -> dict:
        """Re-bind a pid to the version it had before (history), else the next older installed."""
        with self._action("rollback", pids=[pid]) as ctx:
            reg = self.store.load_registry()
            current = reg.active.get(pid)
            if current is None:
                raise StoreError(INVALID_PID, f"{pid} is not bound to any package")
            target = None
            hist = reg.history.get(pid, [])
            while hist:
                cand = hist.pop()
                e = reg.find(cand["name"], cand["version"])
                same = (cand["name"], cand["version"]) == (current["name"], current["version"])
                if e is not None and e.get("state") != "invalid" and not same and _serves(e, pid):
                    target = e
                    break
            if target is None:
                older = sorted(
                    (
                        e
                        for e in reg.packages
                        if e["name"] == current["name"]
                        and e.get("state") != "invalid"
                        and _serves(e, pid)
                        and _version_key(e["version"]) < _version_key(current["version"])
                    ),
                    key=lambda e: _version_key(e["version"]),
                )
                target = older[-1] if older else None
            if target is None:
                raise StoreError(
                    INVALID_PARAMS,
                    f"no earlier version to roll {pid} back to from "
                    f"{current['name']} {current['version']}",
                )
            ctx["name"], ctx["version"] = target["name"], target["version"]
            key = self._warm(target["name"], target["version"])
            out = self._bind(
                reg, target["name"], target["version"], [pid], key, record_history=False
            )
            out["rolled_back_from"] = {"name": current["name"], "version": current["version"]}
            return out

    def deactivate(self, pid: str) -> dict:
        """Unbind a pid; its version's workers stop when no pid routes to it any more."""
        with self._action("deactivate", pids=[pid]) as ctx:
            reg = self.store.load_registry()
            b = reg.active.pop(pid, None)
            if b is None:
                raise StoreError(INVALID_PID, f"{pid} is not bound to any package")
            ctx["name"], ctx["version"] = b["name"], b["version"]
            self.store.save_registry(reg)
            self._unroute([pid])
            return {"pid": pid, "name": b["name"], "version": b["version"]}

    def _unroute(self, pids: list[str]) -> None:
        if self.runner is None:
            return
        routes = self.runner.routes()
        keys = [routes[p] for p in pids if p in routes]
        self.runner.route([p for p in pids if p in routes], None)
        self._release_unrouted(keys)

    def uninstall(self, name: str, version: str, *, force: bool = False) -> dict:
        """Remove an installed version (2007 while bound unless force, which unbinds first)."""
        with self._action("uninstall", name, version) as ctx:
            reg = self.store.load_registry()
            if reg.find(name, version) is None:
                raise StoreError(INVALID_PARAMS, f"{name} {version} is not installed")
            bound = reg.bound_pids(name, version)
            ctx["pids"] = bound
            if bound and not force:
                raise StoreError(
                    UNSAFE_UNINSTALL,
                    f"{name} {version} is bound to {bound}; deactivate or switch them first "
                    "(or --force)",
                )
            for pid in bound:
                reg.active.pop(pid, None)
            reg.packages = [e for e in reg.packages if (e["name"], e["version"]) != (name, version)]
            for pid, hist in reg.history.items():
                reg.history[pid] = [h for h in hist if (h["name"], h["version"]) != (name, version)]
            if self.runner is not None:
                self._unroute(bound)
                from procvision_runner.runner import PackageKey

                key = PackageKey(name, version)
                if self._loaded(key):
                    self.runner.unload(key, drain_timeout_s=self.config.drain_timeout_s)
            trash = self._retire(name, version)
            crash_point("uninstall-after-trash")
            try:
                self.store.save_registry(reg)
            except BaseException:
                with suppress(Exception):
                    self.store.reconcile()  # the registry still names it: put it back
                raise
            crash_point("uninstall-after-registry")
            self._discard(name, version, trash)
            return {"name": name, "version": version, "deactivated": bound}

    # -- queries and start-up ----------------------------------------------------------------

    def list(self, state: str | None = None, name: str | None = None) -> list[dict]:
        """Installed versions with their state (deployed, running, invalid) and bound pids."""
        reg = self.store.read_registry()  # no lock: a query must not wait for an install
        out = []
        for e in sorted(reg.packages, key=lambda e: (e["name"], _version_key(e["version"]))):
            pids = reg.bound_pids(e["name"], e["version"])
            st = e.get("state", "deployed")
            if st != "invalid":
                st = "running" if pids else "deployed"
            item = {
                "name": e["name"],
                "version": e["version"],
                "supported_pids": e.get("supported_pids", []),
                "api": e.get("api", LIFECYCLE),
                "state": st,
                "active_pids": pids,
                "created_at": e.get("created_at"),
                "signed": e.get("signed", False),
                "sha256": e.get("sha256"),
                "path": str(
                    self.store.root / e.get("path", f"deployed/{e['name']}/{e['version']}")
                ),
            }
            if e.get("invalid_reason"):
                item["invalid_reason"] = e["invalid_reason"]
            if e.get("sdk"):
                item["sdk"] = e["sdk"]
            if (state is None or item["state"] == state) and (name is None or e["name"] == name):
                out.append(item)
        return out

    def active(self) -> dict[str, dict]:
        """pid -> {name, version, activated_at}."""
        reg = self.store.read_registry()
        return {pid: dict(b) for pid, b in sorted(reg.active.items())}

    def start(self, pids: Iterable[str] | None = None) -> None:
        """Load and route workers for every active mapping (or only those of `pids`)."""
        if self.runner is None:
            raise StoreError(INVALID_PARAMS, "start() needs a Runner")
        with self.store.lock.held():
            reg = self.store.load_registry()
        wanted = set(pids) if pids is not None else None
        groups: dict[tuple[str, str], list[str]] = {}
        for pid, b in reg.active.items():
            if wanted is None or pid in wanted:
                groups.setdefault((b["name"], b["version"]), []).append(pid)
        failures = []
        for (name, version), group in sorted(groups.items()):
            try:
                self._entry(reg, name, version)
                key = self._warm(name, version)
                assert key is not None
                self.runner.route(sorted(group), key)
            except StoreError as exc:
                failures.append(f"{name} {version}: {exc.message}")
                self.store.audit.record(
                    "start",
                    "failed",
                    package=name,
                    version=version,
                    pids=sorted(group),
                    error_code=exc.error_code,
                    message=exc.message,
                )
        if failures and wanted is not None:
            raise StoreError(INSTALL_FAILED, "; ".join(failures))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _serves(entry: dict, pid: str) -> bool:
    """Whether a registry entry may be bound to `pid`: any pid for an execute-only package."""
    return entry.get("api") == EXECUTE_ONLY or pid in entry.get("supported_pids", [])
