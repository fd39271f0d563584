"""The workers of one package version: start (warmed), stop, drain, and what the state answers.

The base of Pool: restarts and the breaker are added by pool_restart, the calls' side
(acquire/release) by pool. Everything here runs under the pool's one condition.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from procvision_algorithm_sdk.adapter.execute_only import read_manifest
from procvision_algorithm_sdk.errors import INVALID_RESULT, TIMEOUT, UNKNOWN_ERROR, is_retryable
from procvision_algorithm_sdk.generation import synthesized_info

from .breaker import HALF_OPEN, OPEN, CrashLoopBreaker
from .config import RunnerConfig
from .memory import limits_for
from .pool_counters import PoolCounters
from .pool_queue import HandOff
from .results import error_frame
from .states import PoolState
from .warmup import warm_up
from .worker import Spawner, Worker, WorkerSpec, WorkerStartError

if TYPE_CHECKING:
    from .slots import SlotRing

__all__ = ["PoolWorkers"]

log = logging.getLogger("procvision.runner")


class PoolWorkers:
    """Start, stop and drain the workers of one package version; the pool's state."""

    def __init__(
        self,
        spec: WorkerSpec,
        config: RunnerConfig,
        spawner: Spawner,
        workers: int,
        on_log: Callable[[dict[str, Any]], None],
        counters: PoolCounters,
        ring_factory: Callable[[str], SlotRing],
    ) -> None:
        self.spec = spec
        self.config = config
        self.target = workers
        self.state = PoolState.STARTING
        self.info: dict[str, Any] | None = None
        self.failed_code: str | None = None
        self.failed_message: str | None = None
        self._spawner = spawner
        self._on_log = on_log
        self._counters = counters
        self._ring_factory = ring_factory
        self._cond = threading.Condition()
        self._workers: list[Worker] = []
        self._launching: list[Worker] = []  # started but not yet in service: pinged only
        self.handoff = HandOff(
            self._cond, f"{spec.name} {spec.version}", self._workers, self.unavailable, self._busy
        )
        self._entered = 0  # callers routed here that have not finished (see Pool.enter())
        self._starting = 0
        self._seq = 0
        self.breaker = CrashLoopBreaker(config)
        self.memory = limits_for(config, spec.name)
        self._start_threads: list[threading.Thread] = []
        # the supervision's bookkeeping (pool_restart)
        self._recycling: set[str] = set()  # ids of workers whose replacement is starting
        self._retiring: set[str] = set()  # ids replaced while leased: shut down at release
        self._trip_message = ""  # why the breaker opened, quoted while it stays open
        self._counted: set[str] = set()  # ids of lost workers already counted

    # ------------------------------------------------------------------ start/stop

    def start(self) -> None:
        """Start and warm `target` workers; on any start failure the pool is FAILED."""
        results: list[Worker | WorkerStartError] = []
        lock = threading.Lock()

        def one() -> None:
            try:
                worker: Worker | WorkerStartError = self._start_worker()
            except WorkerStartError as exc:
                worker = exc
            except Exception as exc:  # e.g. OSError from a full /dev/shm: never a silent gap
                log.exception("worker start of %s %s failed", self.spec.name, self.spec.version)
                worker = WorkerStartError(f"{type(exc).__name__}: {exc}", UNKNOWN_ERROR)
            with lock:
                results.append(worker)

        threads = [threading.Thread(target=one, daemon=True) for _ in range(self.target)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        errors = [r for r in results if isinstance(r, WorkerStartError)]
        started = [r for r in results if isinstance(r, Worker)]
        with self._cond:
            self._workers.extend(started)
            self.handoff.idle.extend(started)
            self.handoff.serve()
            if errors:
                self._fail(errors[0].error_code, f"worker start failed: {errors[0].message}")
            else:
                self.state = PoolState.READY
            self._cond.notify_all()
        if errors:
            self._stop_workers(started)

    def _start_worker(self) -> Worker:
        """Spawn one worker, run setup, fetch info once, warm it up; WorkerStartError on failure."""
        with self._cond:
            self._seq += 1
            worker_id = f"{self.spec.name}@{self.spec.version}#{self._seq}-{uuid.uuid4().hex[:4]}"
        worker = Worker(worker_id, self.spec, self.config, self._spawner, self._on_log)
        with self._cond:
            self._launching.append(worker)
        try:
            worker.slots = self._ring_factory(worker_id)
            worker.start()
            if self.info is None and not (worker.supports("info") or worker.supports("pre")):
                # the original execute-only adapter (SDK 0.3.x) has no get_info: synthesize it
                self.info = synthesized_info(read_manifest(self.spec.root), self.spec.name)
            if self.info is None:
                self.info = self._fetch_info(worker)
            warm_up(worker, self.config, self.info or {})
        except BaseException:
            worker.terminate("start failed")
            self._dispose(worker)
            raise
        finally:
            with self._cond:
                self._launching.remove(worker)
        return worker

    def _fetch_info(self, worker: Worker) -> dict[str, Any]:
        result = worker.call("info", {}, self.config.startup_timeout_ms)
        info = (result.get("data") or {}).get("info")
        if result.get("status") != "OK" or not isinstance(info, dict):
            raise WorkerStartError(
                f"get_info failed: {result.get('message') or 'no info in the result'}",
                str(result.get("error_code") or INVALID_RESULT),
            )
        return info

    def _dispose(self, worker: Worker) -> None:
        """Reap a worker that has exited (or kill it) and unlink its slots."""
        worker.reap()
        if worker.slots is not None:
            with contextlib.suppress(Exception):
                worker.slots.reclaim_all()
            with contextlib.suppress(Exception):
                worker.slots.close()

    def _stop_workers(self, workers: list[Worker]) -> None:
        timeout = self.config.shutdown_timeout_ms / 1000
        threads = [
            threading.Thread(target=w.shutdown, args=(timeout,), daemon=True) for w in workers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for worker in workers:
            self._dispose(worker)

    def _start_thread(self, target: Callable[[], None]) -> None:
        """Run a start/replace thread that stop() joins (caller holds the condition)."""
        thread = threading.Thread(target=target, daemon=True)
        self._start_threads = [t for t in self._start_threads if t.is_alive()]
        self._start_threads.append(thread)
        thread.start()

    def drain(self, timeout_s: float) -> bool:
        """Wait until no call is queued or in flight; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            if self.state not in (PoolState.FAILED, PoolState.STOPPED):
                self.state = PoolState.DRAINING
            while self._entered or self.handoff.waiters or any(w.leased for w in self._workers):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))
        return True

    def stop(self) -> None:
        """Shut every worker down (teardown), reap them and unlink their slots."""
        with self._cond:
            if self.state != PoolState.FAILED:
                self.state = PoolState.STOPPED
            workers = list(self._workers)
            self._workers.clear()
            self.handoff.idle.clear()
            self.handoff.wake_all()
        self._stop_workers(workers)
        for thread in list(self._start_threads):
            thread.join(timeout=self.config.startup_timeout_ms / 1000)

    def _fail(self, code: str, message: str) -> None:
        """Mark the pool FAILED (caller holds the condition)."""
        self.state = PoolState.FAILED
        self.failed_code = code
        self.failed_message = message
        self.handoff.wake_all()
        log.error("package %s %s FAILED: %s", self.spec.name, self.spec.version, message)

    # ------------------------------------------------------------------ answers

    def busy_error(self, message: str) -> dict[str, Any]:
        """The backpressure answer: 1005, retryable, `data.busy` true."""
        frame = error_frame(message, TIMEOUT, retryable=True)
        frame["data"] = {"busy": True}
        return frame

    def _busy(self, message: str) -> dict[str, Any]:
        self._counters.add("busy_rejections")
        return self.busy_error(message)

    def unavailable(self) -> dict[str, Any] | None:
        """The immediate error for a FAILED or stopped pool, else None.

        While the crash-loop breaker is open the answer says when the next trial worker
        starts (message, and `data.next_trial_in_ms` / `data.next_trial_at_ms`).
        """
        if self.state == PoolState.FAILED:
            code = self.failed_code or TIMEOUT
            message = (
                f"package {self.spec.name} {self.spec.version} is FAILED: {self.failed_message}"
            )
            data: dict[str, Any] = {}
            if self.breaker.state in (OPEN, HALF_OPEN):
                data = self.breaker.describe()
                if self.breaker.state == OPEN:
                    delay_s = max(0.0, self.breaker.next_trial_at - time.monotonic())
                    message += f"; next trial in {delay_s:.1f} s"
                else:
                    message += "; a trial worker is starting"
            frame = error_frame(message, code, retryable=is_retryable(code))
            frame["data"] = data
            return frame
        if self.state == PoolState.STOPPED:
            return error_frame(
                f"package {self.spec.name} {self.spec.version} was unloaded",
                TIMEOUT,
                retryable=True,
            )
        return None

    # ------------------------------------------------------------------ introspection

    def workers(self) -> list[Worker]:
        """The current workers (any state)."""
        with self._cond:
            return list(self._workers)

    def shm_bytes(self) -> int:
        """Bytes of shared memory held by this pool's slot rings."""
        total = 0
        for worker in self.workers():
            if worker.slots is not None:
                with contextlib.suppress(Exception):
                    total += int(worker.slots.bytes_in_use)
        return total

    def _names(self) -> tuple[str, str]:
        return self.spec.name, self.spec.version
