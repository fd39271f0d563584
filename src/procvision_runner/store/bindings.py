"""Binding flows of the PackageManager: activate, switch, rollback, deactivate, start."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from procvision_algorithm_sdk.contract import is_safe_name
from procvision_algorithm_sdk.errors import (
    ACTIVATION_CONFLICT,
    INSTALL_FAILED,
    INVALID_PARAMS,
    INVALID_PID,
)

from .lock import StoreError
from .registry import Registry

if TYPE_CHECKING:
    from procvision_runner.runner import PackageKey


from ._manager_base import (
    ManagerBase,
    _now,
    _serves,
    _version_key,
)


class BindingFlows(ManagerBase):
    """Which version serves which pid; workers are warm before a mapping names their version."""

    def _check_pids(self, entry: dict, pids: list[str]) -> list[str]:
        if not pids:
            raise StoreError(INVALID_PARAMS, "give at least one --pid")
        out: list[str] = []
        for pid in pids:
            if not is_safe_name(pid):
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
