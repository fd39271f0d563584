"""N workers of one package version: FIFO queue, backpressure, restarts, memory recycling.

Pool is assembled from one module per job: pool_workers (start/stop/drain, the state's
answers), pool_restart (supervision, restart backoff, breaker, memory bounds), pool_queue (the
hand-off to waiting callers); this module adds the callers' side: enter/acquire/release.
"""

from __future__ import annotations

import threading
from typing import Any

from .pool_counters import PoolCounters
from .pool_restart import RestartingPool
from .states import PoolState, WorkerState
from .worker import Worker

__all__ = [
    "DRAINING",
    "FAILED",
    "READY",
    "STARTING",
    "STOPPED",
    "Pool",
    "PoolCounters",
    "PoolState",
]

# The names the states had before they became an enum (members equal these strings).
STARTING, READY, FAILED, DRAINING, STOPPED = (
    PoolState.STARTING,
    PoolState.READY,
    PoolState.FAILED,
    PoolState.DRAINING,
    PoolState.STOPPED,
)


class Pool(RestartingPool):
    """The workers of one package version and the queue of callers waiting for one."""

    def enter(self) -> None:
        """Count a caller that was routed to this pool; drain() waits until it leave()s."""
        with self._cond:
            self._entered += 1

    def leave(self) -> None:
        """The caller counted by enter() is done (answered or refused)."""
        with self._cond:
            self._entered -= 1
            self._cond.notify_all()

    def acquire(
        self, timeout_s: float, prefer: str | None = None
    ) -> tuple[Worker | None, dict[str, Any] | None]:
        """Take a worker, waiting in the bounded FIFO queue; waiters are served in arrival order.

        An idle worker is taken at once (preferring `prefer`) only when nobody is waiting: a
        new arrival never overtakes a waiter, and release() hands a worker directly to the
        oldest waiter instead of putting it back where the releasing caller could retake it.
        """
        return self.handoff.take(timeout_s, self.config.queue_size, prefer)

    def release(self, worker: Worker) -> None:
        """Give a worker back after a call; a retiring or dead one is terminated and replaced."""
        if worker.retire and worker.state == WorkerState.READY:
            worker.terminate("restart requested by the algorithm (FatalError)")
        bloated = self._above_recycle_limit(worker)
        with self._cond:
            worker.leased = False
            retired = worker.id in self._retiring and worker in self._workers
            if retired:  # its replacement is already serving
                self._retiring.discard(worker.id)
                self._workers.remove(worker)
            if worker.state == WorkerState.READY and worker in self._workers:
                self.breaker.survived()
                self.handoff.offer(worker)
                if bloated:
                    self._start_recycle(worker)
            elif worker.state == WorkerState.READY:  # the pool stopped meanwhile, or replaced
                threading.Thread(target=self._stop_workers, args=([worker],), daemon=True).start()
            self._cond.notify_all()

    def describe(self) -> dict[str, Any]:
        """State, workers and info for packages()/stats()."""
        with self._cond:
            waiters = len(self.handoff.waiters)
        out: dict[str, Any] = {
            "name": self.spec.name,
            "version": self.spec.version,
            "state": self.state.value,
            "workers": [w.info() for w in self.workers()],
            "target_workers": self.target,
            "queued": waiters,
            "info": self.info,
            "transport": self.spec.transport,
        }
        if self.state == PoolState.FAILED:
            out["error"] = {"error_code": self.failed_code, "message": self.failed_message}
        out.update(self.breaker.describe())
        out["restart_backoff_ms"] = self.breaker.backoff_ms
        return out
