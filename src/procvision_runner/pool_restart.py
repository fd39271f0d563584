"""Supervision of one pool: heartbeats, lost workers, restart backoff, the breaker, memory bounds.

Run by the Runner's supervisor thread through tick(). A lost worker is counted by the kind of
its failure (states.FailureKind), replaced after the breaker's backoff, and enough failures in
the window open the breaker (the pool is FAILED until a trial worker starts).
"""

from __future__ import annotations

import logging
import time

from procvision_algorithm_sdk.errors import TIMEOUT

from .breaker import HALF_OPEN
from .memory import megabytes, rss_bytes
from .pool_workers import PoolWorkers
from .states import Failure, FailureKind, PoolState, WorkerState
from .worker import Worker, WorkerStartError

__all__ = ["RestartingPool"]

log = logging.getLogger("procvision.runner")

# Which counter a lost worker adds to; heartbeat and memory losses are counted where detected.
_LOSS_COUNTERS = {FailureKind.TIMEOUT: "timeouts", FailureKind.CRASH: "crashes"}
_SERVING = (PoolState.READY, PoolState.DRAINING)


class RestartingPool(PoolWorkers):
    """A pool whose lost workers are counted, replaced with backoff, or trip the breaker."""

    def tick(self, now: float) -> None:
        """Heartbeats, kill escalation, reaping, replacements; run by the supervisor thread."""
        with self._cond:
            workers = list(self._workers)
            launching = list(self._launching)
        for worker in launching:
            worker.heartbeat(now, enforce=False)
        for worker in workers:
            worker.tick(now)
            self._watch_memory(worker)
            if worker.state == WorkerState.READY and not worker.heartbeat(now):
                self._counters.add("heartbeat_losses")
                worker.lose(
                    f"heartbeat lost: no pong for more than "
                    f"{self.config.heartbeat_interval_ms + self.config.heartbeat_grace_ms} ms"
                )
            if worker.state == WorkerState.DEAD:
                self._tend_dead(worker, now)
        self._maybe_restart(now)

    def _tend_dead(self, worker: Worker, now: float) -> None:
        """Count a dead worker once, make sure it exits, then take it out and dispose of it."""
        if worker.id not in self._counted:
            self._counted.add(worker.id)
            self._worker_lost(worker, now)
        if not worker.exited():
            # Out of service but still running (e.g. it closed its pipes): it would hold
            # its slots and memory until close(). Idempotent; tick() escalates to SIGKILL.
            worker.terminate(worker.failure or "out of service but still running")
        if worker.exited() and not worker.leased:
            with self._cond:
                if worker in self._workers:
                    self._workers.remove(worker)
                self.handoff.discard(worker)
            self._dispose(worker)
            self._counted.discard(worker.id)

    def _worker_lost(self, worker: Worker, now: float) -> None:
        failure = worker.lost_because or Failure(FailureKind.CRASH, "worker exited")
        counter = _LOSS_COUNTERS.get(failure.kind)
        if counter is not None:
            self._counters.add(counter)
        log.warning(
            "worker %s (pid %s) of %s %s lost: %s",
            worker.id,
            worker.pid,
            self.spec.name,
            self.spec.version,
            failure.message,
        )
        self._record_failure(now, TIMEOUT, failure.message)

    def _record_failure(self, now: float, code: str, reason: str) -> None:
        with self._cond:
            opened = self.breaker.record_failure(now) and self.state in _SERVING
            if opened:
                self._counters.add("crash_loops")
                self._trip_message = (
                    f"crash loop: {self.breaker.failures_in_window()} worker failures within "
                    f"{self.config.crash_loop_window_s:g} s; last: {reason}"
                )
                self._fail(code, self._trip_message)
                doomed = list(self._workers)
            else:
                doomed = []
            self._cond.notify_all()
        for worker in doomed:
            worker.terminate("package FAILED")

    def _maybe_restart(self, now: float) -> None:
        with self._cond:
            if self.state == PoolState.FAILED and self.breaker.trial_due(now):
                self.breaker.begin_trial()
                self._counters.add("breaker_trials")
                self._start_thread(self._trial)
                return
            if self.state not in _SERVING or not self.breaker.restart_due(now):
                return
            live = sum(1 for w in self._workers if w.state != WorkerState.DEAD)
            if live + self._starting >= self.target:
                return
            self._starting += 1
            self._counters.add("restarts")
            self._start_thread(self._replace)

    def _trial(self) -> None:
        """Half-open: start one worker; success closes the breaker, failure re-opens it."""
        try:
            worker: Worker | None = self._start_worker()
            failure = ""
        except WorkerStartError as exc:
            worker, failure = None, f"trial worker failed: {exc} (code {exc.error_code})"
        except Exception as exc:  # never let the trial thread die silently
            log.exception("trial worker failed")
            worker, failure = None, f"trial worker failed: {type(exc).__name__}: {exc}"
        with self._cond:
            keep = (
                worker is not None
                and self.state == PoolState.FAILED
                and self.breaker.state == HALF_OPEN
            )
            if keep and worker is not None:
                self.breaker.trial_passed()
                self.state = PoolState.READY
                self.failed_code = self.failed_message = None
                self._workers.append(worker)
                self.handoff.offer(worker)
                log.warning("package %s %s: trial worker up, breaker closed", *self._names())
            elif self.breaker.state == HALF_OPEN:
                self.breaker.trial_failed(time.monotonic())
                if failure:
                    self.failed_message = f"{self._trip_message}; {failure}"
                    log.error("package %s %s: %s", *self._names(), failure)
            self._cond.notify_all()
        if worker is not None and not keep:
            self._stop_workers([worker])

    def _replace(self) -> None:
        try:
            worker = self._start_worker()
        except WorkerStartError as exc:
            with self._cond:
                self._starting -= 1
            self._record_failure(time.monotonic(), exc.error_code, f"restart failed: {exc}")
            return
        except Exception as exc:  # never let a replacement thread die silently
            log.exception("replacement worker failed")
            with self._cond:
                self._starting -= 1
            self._record_failure(time.monotonic(), TIMEOUT, f"restart failed: {exc}")
            return
        with self._cond:
            self._starting -= 1
            keep = self.state in _SERVING
            if keep:
                self._workers.append(worker)
                self.handoff.offer(worker)
        if not keep:
            self._stop_workers([worker])

    def call_succeeded(self) -> None:
        """A call completed normally: the restart backoff starts over."""
        with self._cond:
            self.breaker.succeeded()

    # ------------------------------------------------------------------ memory bounds

    def _watch_memory(self, worker: Worker) -> None:
        """Kill a worker above worker_memory_limit_mb; its call answers 1004."""
        limit = self.memory.kill_above
        if not limit or worker.state != WorkerState.READY:
            return
        rss = rss_bytes(worker.pid)
        if rss is not None and rss > limit:
            self._counters.add("memory_kills")
            worker.lose(
                f"worker memory {megabytes(rss)} above the hard limit of {megabytes(limit)} "
                "(worker_memory_limit_mb); it was killed and is replaced",
                kind=FailureKind.MEMORY,
            )

    def _above_recycle_limit(self, worker: Worker) -> bool:
        """Whether a worker coming back from a call holds more memory than max_worker_rss_mb."""
        limit = self.memory.recycle_above
        if not limit or worker.state != WorkerState.READY or worker.id in self._recycling:
            return False
        rss = rss_bytes(worker.pid)
        return rss is not None and rss > limit

    def _start_recycle(self, worker: Worker) -> None:
        """Start replacing a worker above the memory bound (caller holds the condition)."""
        if worker.id in self._recycling or self.state != PoolState.READY:
            return
        self._recycling.add(worker.id)
        self._starting += 1  # so a loss meanwhile does not start a second one
        self._start_thread(lambda: self._recycle(worker))

    def _recycle(self, old: Worker) -> None:
        """Replace a worker above the memory bound: the new one is warmed before the old goes."""
        try:
            new = self._start_worker()
        except Exception as exc:  # it keeps serving; the next call over the bound tries again
            log.warning("memory recycle of %s failed to start a replacement: %s", old.id, exc)
            with self._cond:
                self._recycling.discard(old.id)
                self._starting -= 1
            return
        doomed: list[Worker] = []
        with self._cond:
            self._recycling.discard(old.id)
            self._starting -= 1
            if self.state not in _SERVING:
                doomed.append(new)
            else:
                self._workers.append(new)
                self.handoff.offer(new)
                self._counters.add("memory_recycles")
                log.info(
                    "worker %s recycled above %s", old.id, megabytes(self.memory.recycle_above)
                )
                if old in self._workers and old.leased:
                    self._retiring.add(old.id)
                elif old in self._workers:
                    self._workers.remove(old)
                    self.handoff.discard(old)
                    doomed.append(old)
        if doomed:
            self._stop_workers(doomed)
