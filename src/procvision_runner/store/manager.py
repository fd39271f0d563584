"""PackageManager: install, activate, switch, rollback, deactivate, uninstall (contract section 8).

Every flow takes the store lock for its whole length, so flows from several processes run one
after another; the queries (`list`, `active`) read registry.json without it, so they never
wait for an install. Registry changes are single atomic writes of registry.json; the workers of a
version are started and warm before a mapping that names it is written. With a `runner` (the
HTTP service) those workers stay and the Runner's routes follow the registry; without one (the
`procvision-runner` CLI) a short-lived Runner proves the version starts and warms, then stops.
"""

from __future__ import annotations

from contextlib import suppress

from procvision_algorithm_sdk.errors import (
    INVALID_PARAMS,
    UNSAFE_UNINSTALL,
)
from procvision_algorithm_sdk.generation import LIFECYCLE

from ..legacy_transport import TRANSPORT_SHM
from ._manager_base import (
    RESERVED,
    SDK_WHEEL_DIR,
    ManagerBase,
    StoreConfig,
    _version_key,
)
from .bindings import BindingFlows
from .crashpoints import crash_point
from .install import InstallFlows
from .lock import StoreError
from .version_leases import describe_users

__all__ = ["RESERVED", "SDK_WHEEL_DIR", "ManagerBase", "PackageManager", "StoreConfig"]


class PackageManager(InstallFlows, BindingFlows):
    """The lifecycle flows on one store, optionally driving a live Runner."""

    def uninstall(self, name: str, version: str, *, force: bool = False) -> dict:
        """Remove an installed version (2007 while bound unless force, which unbinds first)."""
        with self._action("uninstall", name, version) as ctx:
            reg = self.store.load_registry()
            if reg.find(name, version) is None:
                raise StoreError(INVALID_PARAMS, f"{name} {version} is not installed")
            users = self.leases.users(name, version)
            if users:  # --force stops our own workers, never another process's
                raise StoreError(
                    UNSAFE_UNINSTALL,
                    f"{name} {version} is running in another process: {describe_users(users)}; "
                    "stop it there first",
                )
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
                self.leases.release(name, version)
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
            item["transport"] = e.get("transport", TRANSPORT_SHM)
            if (state is None or item["state"] == state) and (name is None or e["name"] == name):
                out.append(item)
        return out

    def active(self) -> dict[str, dict]:
        """pid -> {name, version, activated_at}."""
        reg = self.store.read_registry()
        return {pid: dict(b) for pid, b in sorted(reg.active.items())}
