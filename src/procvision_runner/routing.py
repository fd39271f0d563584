"""The Runner's package table: pid -> package version -> pool; load, route, switch, drain, unload.

A call looks its pid up with enter(), which counts it in the pool under the routing lock, so a
switch that unroutes the pool right after finds the call in drain() instead of stopping the
pool under it.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from procvision_algorithm_sdk.contract import check_manifest, is_safe_name
from procvision_algorithm_sdk.errors import (
    ACTIVATION_CONFLICT,
    INCOMPATIBLE_PYTHON,
    INVALID_PID,
    MANIFEST_MISSING,
)
from procvision_algorithm_sdk.generation import EXECUTE_ONLY, manifest_api

from . import execute_only, legacy_transport
from .calls import PackageKey
from .config import RunnerConfig
from .errors import RunnerError
from .pool import Pool, PoolCounters
from .slots import SlotRing
from .states import PoolState
from .worker import Spawner, WorkerSpec

__all__ = ["PackageTable"]

log = logging.getLogger("procvision.runner")

_GONE = (PoolState.FAILED, PoolState.STOPPED)


class PackageTable:
    """Loaded packages (one pool per version), their manifests and the pid routes."""

    def __init__(
        self,
        config: RunnerConfig,
        spawner: Spawner,
        counters: PoolCounters,
        on_log: Callable[[dict[str, Any]], None],
    ) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.pools: dict[PackageKey, Pool] = {}
        self.closed = False  # set by close(): a load finishing after it stops its pool
        self._manifests: dict[PackageKey, dict[str, Any]] = {}
        self._routes: dict[str, PackageKey] = {}
        self._spawner = spawner
        self._counters = counters
        self._on_log = on_log

    # ------------------------------------------------------------------ load

    def load(
        self,
        path: str | Path,
        python: str | None,
        activate: bool,
        workers: int | None,
        transport: str,
    ) -> PackageKey:
        """Start and warm a pool for the package at `path`; route its pids if asked."""
        root = Path(path).resolve()
        manifest = _read_manifest(root)
        key = PackageKey(manifest["name"], manifest["version"])
        count = self.config.workers_per_package if workers is None else workers
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise RunnerError(f"workers must be a positive integer, not {count!r}")
        interpreter = sys.executable if python is None else str(python)
        if python is not None and not Path(interpreter).is_file():
            raise RunnerError(
                f"python interpreter {interpreter} does not exist", INCOMPATIBLE_PYTHON
            )
        # An execute-only manifest has no supported_pids: route() binds the pids asked for.
        pids = [str(p) for p in manifest.get("supported_pids") or []]
        with self.lock:
            existing = self.pools.get(key)
            if activate:
                self._check_conflicts(pids, key)
            if existing is not None and existing.state not in _GONE:
                if activate:
                    self._routes.update(dict.fromkeys(pids, key))
                return key
        if existing is not None:
            existing.stop()
        if transport not in legacy_transport.TRANSPORTS:
            raise RunnerError(f"transport must be one of {legacy_transport.TRANSPORTS}")
        spec = WorkerSpec(key.name, key.version, root, interpreter, transport)
        pool = self._start_pool(spec, count, manifest)
        with self.lock:
            if self.closed:
                pool.stop()
                raise RunnerError("the runner was closed while the package was loading")
            if activate:
                self._check_conflicts(pids, key)
                self._routes.update(dict.fromkeys(pids, key))
        return key

    def _start_pool(self, spec: WorkerSpec, count: int, manifest: dict[str, Any]) -> Pool:
        """Start the pool of a package; RunnerError when its class and manifest disagree."""
        key = PackageKey(spec.name, spec.version)
        exonly_manifest = manifest_api(manifest) == EXECUTE_ONLY
        # an execute-only call holds two slots at once (current and guide frame)
        slots = self.config.slots_per_worker
        if exonly_manifest:
            slots = max(2, slots)
        initial = self.config.slot_initial_bytes
        pool = Pool(
            spec,
            self.config,
            self._spawner,
            count,
            self._on_log,
            self._counters,
            lambda owner: SlotRing(owner, slots, initial),
        )
        with self.lock:
            self.pools[key] = pool
            self._manifests[key] = manifest
        pool.start()
        exonly_class = execute_only.package_api(pool.info) == EXECUTE_ONLY
        if pool.state in _GONE or exonly_class == exonly_manifest:
            return pool
        pool.stop()
        self._forget(key, pool)
        raise RunnerError(
            f"{spec.root / 'manifest.json'} declares the "
            f"{'execute-only' if exonly_manifest else 'lifecycle'} API but the entry class "
            f"implements the other one (execute-only manifests have no supported_pids)",
            MANIFEST_MISSING,
        )

    def _check_conflicts(self, pids: Iterable[str], key: PackageKey) -> None:
        clash = {p: self._routes[p] for p in pids if self._routes.get(p, key) != key}
        if clash:
            bound = ", ".join(f"{p} -> {k.name} {k.version}" for p, k in sorted(clash.items()))
            raise RunnerError(f"pids already routed elsewhere: {bound}", ACTIVATION_CONFLICT)

    def _forget(self, key: PackageKey, pool: Pool) -> None:
        with self.lock:
            if self.pools.get(key) is pool:
                del self.pools[key]
                self._manifests.pop(key, None)

    # ------------------------------------------------------------------ routes

    def route(self, pids: Iterable[str], key: PackageKey | None) -> None:
        """Bind pids to a loaded package (all at once), or unbind them with None."""
        wanted = [str(p) for p in pids]
        with self.lock:
            if key is None:
                for pid in wanted:
                    self._routes.pop(pid, None)
                return
            key = PackageKey(*key)
            if key not in self.pools:
                raise RunnerError(f"package {key.name} {key.version} is not loaded", INVALID_PID)
            manifest = self._manifests[key]
            if manifest_api(manifest) == EXECUTE_ONLY:
                # any safe pid: an execute-only package serves whatever it is bound to
                unsafe = [p for p in wanted if not is_safe_name(p)]
                if unsafe:
                    raise RunnerError(f"pids {unsafe} are not safe names", INVALID_PID)
                self._routes.update(dict.fromkeys(wanted, key))
                return
            supported = {str(p) for p in manifest["supported_pids"]}
            missing = [p for p in wanted if p not in supported]
            if missing:
                raise RunnerError(
                    f"pids {missing} are not in the supported_pids of {key.name} {key.version}",
                    INVALID_PID,
                )
            self._routes.update(dict.fromkeys(wanted, key))

    def unload(self, key: PackageKey, drain_timeout_s: float) -> None:
        """Unroute a package, wait for its in-flight calls, then stop its workers."""
        key = PackageKey(*key)
        with self.lock:
            pool = self.pools.get(key)
            if pool is None:
                raise RunnerError(f"package {key.name} {key.version} is not loaded", INVALID_PID)
            for pid in [p for p, k in self._routes.items() if k == key]:
                del self._routes[pid]
        if not pool.drain(drain_timeout_s):
            log.warning("unload of %s %s: calls still running after drain", *key)
        pool.stop()
        self._forget(key, pool)

    def enter(self, pid: object) -> tuple[PackageKey, Pool] | None:
        """The package and pool serving `pid`, the call counted in the pool (leave() it)."""
        with self.lock:
            key = self._routes.get(pid) if isinstance(pid, str) else None
            pool = self.pools.get(key) if key is not None else None
            if key is None or pool is None:
                return None
            pool.enter()
            return key, pool

    def routes(self) -> dict[str, PackageKey]:
        """Return the current pid -> package routing."""
        with self.lock:
            return dict(self._routes)

    def packages(self) -> list[dict[str, Any]]:
        """Loaded packages: name, version, state, workers, info, routed pids."""
        with self.lock:
            pools = list(self.pools.items())
            routes = dict(self._routes)
        out = []
        for key, pool in pools:
            item = pool.describe()
            item["pids"] = sorted(p for p, k in routes.items() if k == key)
            out.append(item)
        return out

    def pool(self, key: PackageKey) -> Pool | None:
        """The pool of a loaded package version, None when it is not loaded."""
        with self.lock:
            return self.pools.get(PackageKey(*key))

    def all_pools(self) -> list[Pool]:
        """Every loaded pool (a snapshot)."""
        with self.lock:
            return list(self.pools.values())

    def close(self) -> list[Pool]:
        """Refuse further loads and unroute every pid; return the pools to stop."""
        with self.lock:
            self.closed = True
            self._routes.clear()
            return list(self.pools.values())


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RunnerError(f"{path} not found", MANIFEST_MISSING) from exc
    except (OSError, ValueError) as exc:
        raise RunnerError(f"{path} is not readable JSON: {exc}", MANIFEST_MISSING) from exc
    problems = check_manifest(manifest)
    if problems:
        text = "; ".join(f"{p.where}: {p.message}" for p in problems[:5])
        raise RunnerError(f"invalid manifest {path}: {text}", problems[0].code)
    return dict(manifest)
