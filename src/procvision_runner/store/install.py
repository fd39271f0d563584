"""Install flows of the PackageManager: check, validate, build, smoke test, prune, replace."""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import time
from contextlib import suppress
from pathlib import Path

from procvision_algorithm_sdk.contract import Problem, check_manifest
from procvision_algorithm_sdk.errors import (
    INSTALL_FAILED,
    INVALID_ZIP,
    UNSAFE_UNINSTALL,
    ProcVisionError,
)
from procvision_algorithm_sdk.generation import manifest_api

from ..legacy_transport import TRANSPORT_FILES, TRANSPORT_SHM
from . import signing
from ._manager_base import (
    RESERVED,
    SDK_WHEEL_DIR,
    ManagerBase,
    _first_code,
    _now,
    _problems_text,
    _sha256,
    _version_key,
)
from .crashpoints import crash_point
from .layout import (
    INSTALL_MARKER,
    REPLACED_ZIP,
    TMP_PREFIX,
    TRASH_PREFIX,
    _remove,
)
from .lock import StoreError
from .progress import ProgressFn, Reporter
from .registry import Registry, atomic_write_json, fsync_dir
from .venv import build_venv
from .zipcheck import ZipLayout, check_zip, extract_zip


class InstallFlows(ManagerBase):
    """check / validate_zip / install, each under the store lock."""

    def check(self, zip_path: str | Path) -> tuple[ZipLayout | None, list[Problem], bool]:
        """All checks an install makes before unpacking: (layout, problems, signed)."""
        # The resolver and packaging's parsers load here: a store opened to list or bind
        # packages never needs them.
        from .closure import check_closure_in_zip
        from .wheels import TargetEnv, check_env_file, check_requirements

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

    def _substitute_sdk(self, work: Path, layout: ZipLayout, keep: bool) -> tuple[str | None, str]:
        """Put the Runner's SDK in place of a bundled original one: (registry note, transport)."""
        from .sdk_substitute import bundled_sdk, runner_sdk_wheel, substitute_sdk, substitution_note

        found = bundled_sdk(layout.wheels)
        if found is None:
            return None, TRANSPORT_SHM
        if keep:
            return f"bundled {found[1]} (kept)", TRANSPORT_FILES
        ours = runner_sdk_wheel(self.store.root / SDK_WHEEL_DIR)
        substitute_sdk(work, sorted({"requirements.txt", layout.requirements_file}), found[0], ours)
        return substitution_note(found[1]), TRANSPORT_SHM

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

    def install(
        self,
        zip_path: str | Path,
        *,
        replace: bool = False,
        keep_bundled_sdk: bool = False,
        progress: ProgressFn | None = None,
    ) -> dict:
        """Check, unpack, build the venv, smoke it, rename into place, register; the entry.

        A bundled original SDK is replaced by ours unless `keep_bundled_sdk`: then it stays,
        and the Runner speaks the earlier protocol to the package's workers (frames as files).
        `progress(phase, message)` hears of every step as it starts (store.progress.PHASES).
        """
        zip_path = Path(zip_path)
        say = Reporter("install", progress)
        with self._action("install") as ctx:
            ctx["message"] = str(zip_path)
            say("check", "checking the zip: layout, manifest, wheels, dependencies, signature")
            layout, problems, signed = self.check(zip_path)
            if layout is not None:
                ctx["name"], ctx["version"] = layout.name, layout.version
            if problems or layout is None:
                raise StoreError(_first_code(problems), _problems_text(problems))
            name, version = layout.name, layout.version
            say("check", f"{name} {version}: checks passed" + (" (signed)" if signed else ""))
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
            entry, replaced = self._build(
                zip_path, layout, signed, say, replace=old is not None, keep_sdk=keep_bundled_sdk
            )
            say("register", f"registering {name} {version}")
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
            pids = ", ".join(entry["supported_pids"]) or "none"
            say("done", f"installed {name} {version} (supported pids: {pids})")
            return dict(entry)

    def _build(
        self,
        zip_path: Path,
        layout: ZipLayout,
        signed: bool,
        say: Reporter,
        *,
        replace: bool,
        keep_sdk: bool,
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
            say("unpack", f"unpacking {len(layout.files)} files")
            try:
                extract_zip(zip_path, work, layout, self.config.limits)
            except ValueError as exc:
                raise StoreError(INVALID_ZIP, f"unpacking refused: {exc}") from exc
            crash_point("install-after-extract")
            sdk_note, transport = self._substitute_sdk(work, layout, keep_sdk)
            vpy, _log = build_venv(
                work,
                self.python,
                self.config.install_timeout_s,
                self.store.tmp,
                requirements=layout.requirements_file,
                on_step=lambda message: say("venv", message),
            )
            crash_point("install-after-venv")
            say("smoke", "starting the package in a worker (setup, get_info)")
            info = self._smoke(work, vpy, layout.manifest, transport)
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
                entry["transport"] = transport
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

    def _smoke(self, path: Path, python: Path, manifest: dict, transport: str) -> dict:
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
                key = runner.load(path, python=str(python), activate=False, transport=transport)
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
        in_use = self.leases.in_use()  # never prune what a live process runs
        drop = [
            e
            for e in versions[self.config.keep_versions :]
            if not reg.bound_pids(e["name"], e["version"])
            and (e["name"], e["version"]) not in in_use
        ]
        gone = {(e["name"], e["version"]) for e in drop}
        reg.packages = [e for e in reg.packages if (e["name"], e["version"]) not in gone]
        for pid, hist in reg.history.items():
            reg.history[pid] = [h for h in hist if (h["name"], h["version"]) not in gone]
        return drop
