"""One node's Runner and package store, driven by a RolloutPlan (no Ray in here).

The Ray deployment (deployment.py) holds one NodeRunner per replica; keeping the logic free of
Ray lets the same code run a station and a cluster node alike.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

from procvision_algorithm_sdk.errors import INVALID_PARAMS

from ..config import RunnerConfig
from ..errors import RunnerError
from ..runner import Runner
from ..service.context import Startup
from ..service.health import readiness
from ..store import PackageManager, PackageStore
from .plan import RolloutPlan

__all__ = ["NodeRunner"]


class NodeRunner:
    """A node's store (installed from the plan's zips with the station's checks) and Runner."""

    def __init__(self, store_root: str | Path, runner_config: RunnerConfig | None = None) -> None:
        self.store = PackageStore(store_root)
        self.runner = Runner(runner_config)
        self.manager = PackageManager(self.store, self.runner)
        self._startup = Startup()
        self._apply_lock = threading.Lock()  # one rollout at a time

    def apply(self, plan: RolloutPlan) -> dict[str, Any]:
        """Install missing zips, then switch every pid group (warm new, flip, drain old)."""
        with self._apply_lock:
            installed = self._install(plan.zips)
            for (name, version), pids in plan.groups().items():
                self.manager.switch(name, version, pids)
            stale = sorted(set(self.manager.active()) - set(plan.active))
            for pid in stale:
                self.manager.deactivate(pid)
            self._startup.done.set()
            return {"installed": installed, "active": self.manager.active(), "removed": stale}

    def _install(self, zips: tuple[Path, ...]) -> list[str]:
        have = {e.get("sha256") for e in self.manager.list()}
        done = []
        for path in zips:
            # one hash per zip (it used to be hashed again for every installed entry)
            if _sha256(path) in have:
                continue  # the same zip bytes are installed already
            entry = self.manager.install(path)
            done.append(f"{entry['name']} {entry['version']}")
        return done

    def run_step(
        self,
        pid: str,
        step_index: int,
        frame: Any,
        *,
        session_id: str | None = None,
        session_state: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Run a step; a carried session state is adopted first and the new one handed back."""
        if session_state is not None:
            if session_id is None:
                raise RunnerError("a session_state needs its session_id", INVALID_PARAMS)
            self.runner.restore_session(session_id, session_state, kwargs.get("session_context"))
        result = self.runner.run_step(pid, step_index, frame, session_id=session_id, **kwargs)
        state = self.runner.session_state(session_id) if session_id is not None else None
        return {"result": result, "session_state": state}

    def readiness(self) -> dict[str, Any]:
        """The station's readiness: every active version loaded, READY, routed; none FAILED."""
        return readiness(self.manager, self.runner, self._startup)

    def close(self) -> None:
        """Stop every worker and unlink every slot."""
        self.runner.close()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
