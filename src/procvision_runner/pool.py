"""N workers of one package version: FIFO queue, backpressure, restarts, memory recycling."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from procvision_algorithm_sdk.adapter.execute_only import read_manifest
from procvision_algorithm_sdk.errors import INVALID_RESULT, TIMEOUT, UNKNOWN_ERROR, is_retryable
from procvision_algorithm_sdk.generation import synthesized_info

from .breaker import HALF_OPEN, OPEN, CrashLoopBreaker
from .config import RunnerConfig
from .memory import limits_for, megabytes, rss_bytes
from .warmup import warm_up
from .worker import Spawner, Worker, WorkerSpec, WorkerStartError, error_frame

log = logging.getLogger("procvision.runner")

STARTING, READY, FAILED, DRAINING, STOPPED = "STARTING", "READY", "FAILED", "DRAINING", "STOPPED"


class PoolCounters:
    """Runner-wide counters shared by every pool (read by stats())."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.restarts = 0
        self.timeouts = 0
        self.crashes = 0
        self.heartbeat_losses = 0
        self.crash_loops = 0
        self.breaker_trials = 0
        self.memory_recycles = 0
        self.memory_kills = 0
        self.busy_rejections = 0

    def add(self, name: str, n: int = 1) -> None:
        """Increment one counter."""
        with self.lock:
            setattr(self, name, getattr(self, name) + n)

    def as_dict(self) -> dict[str, int]:
        """Return the counters as a dict."""
        with self.lock:
            return {
                k: getattr(self, k)
                for k in (
                    "restarts",
                    "timeouts",
                    "crashes",
                    "heartbeat_losses",
                    "crash_loops",
                    "breaker_trials",
                    "memory_recycles",
                    "memory_kills",
                    "busy_rejections",
                )
            }


class _Waiter:
    """One caller queued for a worker; release() fills `worker` (hand-off in arrival order)."""

    __slots__ = ("event", "worker")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.worker: Worker | None = None


class Pool:
    """The workers of one package version and the queue of callers waiting for one."""

    def __init__(
        self,
        spec: WorkerSpec,
        config: RunnerConfig,
        spawner: Spawner,
        workers: int,
        on_log: Callable[[dict[str, Any]], None],
        counters: PoolCounters,
        ring_factory: Callable[[str], Any],
    ) -> None:
        self.spec = spec
        self.config = config
        self.target = workers
        self.state = STARTING
        self.info: dict[str, Any] | None = None
        self.failed_code: str | None = None
        self.failed_message: str | None = None
        self._spawner = spawner
        self._on_log = on_log
        self._counters = counters
        self._ring_factory = ring_factory
        self._cond = threading.Condition()
        self._workers: list[Worker] = []
        self._idle: list[Worker] = []
        self._launching: list[Worker] = []  # started but not yet in service: pinged only
        self._queue: deque[_Waiter] = deque()  # callers waiting for a worker, oldest first
        self._entered = 0  # callers routed here that have not finished (see enter())
        self._starting = 0
        self._seq = 0
        self.breaker = CrashLoopBreaker(config)
        self.memory = limits_for(config, spec.name)
        self._recycling: set[str] = set()  # ids of workers whose replacement is starting
        self._retiring: set[str] = set()  # ids replaced while leased: shut down at release
        self._trip_message = ""
        self._counted: set[str] = set()
        self._start_threads: list[threading.Thread] = []

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
            self._idle.extend(started)
            self._serve_queue()
            if errors:
                self._fail(errors[0].error_code, f"worker start failed: {errors[0].message}")
            else:
                self.state = READY
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
                result = worker.call("info", {}, self.config.startup_timeout_ms)
                info = (result.get("data") or {}).get("info")
                if result.get("status") != "OK" or not isinstance(info, dict):
                    raise WorkerStartError(
                        f"get_info failed: {result.get('message') or 'no info in the result'}",
                        str(result.get("error_code") or INVALID_RESULT),
                    )
                self.info = info
            warm_up(worker, self.config, self.info or {})
        except BaseException:
            worker.terminate("start failed")
            self._dispose(worker)
            raise
        finally:
            with self._cond:
                self._launching.remove(worker)
        return worker

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

    def drain(self, timeout_s: float) -> bool:
        """Wait until no call is queued or in flight; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            if self.state not in (FAILED, STOPPED):
                self.state = DRAINING
            while self._entered or self._queue or any(w.leased for w in self._workers):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))
        return True

    def stop(self) -> None:
        """Shut every worker down (teardown), reap them and unlink their slots."""
        with self._cond:
            self.state = STOPPED if self.state != FAILED else FAILED
            workers = list(self._workers)
            self._workers.clear()
            self._idle.clear()
            self._wake_waiters()
        self._stop_workers(workers)
        for thread in list(self._start_threads):
            thread.join(timeout=self.config.startup_timeout_ms / 1000)

    # ------------------------------------------------------------------ calls

    def busy_error(self, message: str) -> dict[str, Any]:
        """The backpressure answer: 1005, retryable, `data.busy` true."""
        frame = error_frame(message, TIMEOUT, retryable=True)
        frame["data"] = {"busy": True}
        return frame

    def unavailable(self) -> dict[str, Any] | None:
        """The immediate error for a FAILED or stopped pool, else None.

        While the crash-loop breaker is open the answer says when the next trial worker
        starts (message, and `data.next_trial_in_ms` / `data.next_trial_at_ms`).
        """
        if self.state == FAILED:
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
        if self.state == STOPPED:
            return error_frame(
                f"package {self.spec.name} {self.spec.version} was unloaded",
                TIMEOUT,
                retryable=True,
            )
        return None

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
        deadline = time.monotonic() + timeout_s
        with self._cond:
            error = self.unavailable()
            if error is not None:
                return None, error
            self._prune_idle()
            if self._idle and not self._queue:
                first = next((w for w in self._idle if w.id == prefer), self._idle[0])
                self._idle.remove(first)
                first.leased = True
                return first, None
            if len(self._queue) >= self.config.queue_size:
                self._counters.add("busy_rejections")
                return None, self.busy_error(
                    f"busy: {len(self._queue)} calls already queued for "
                    f"{self.spec.name} {self.spec.version} "
                    f"(queue_size {self.config.queue_size})"
                )
            waiter = _Waiter()
            self._queue.append(waiter)
            self._serve_queue()
        # Each waiter sleeps on its own event: a hand-off wakes exactly the caller it serves,
        # with no herd of woken waiters racing it for the pool's lock.
        try:
            while True:
                waiter.event.wait(max(0.0, deadline - time.monotonic()))
                with self._cond:
                    chosen, waiter.worker = waiter.worker, None
                    if chosen is not None:
                        if chosen.state == "READY" and not chosen.retire:
                            return chosen, None
                        # Died between the hand-off and our wake-up: keep our place in front.
                        chosen.leased = False
                        self._queue.appendleft(waiter)
                        waiter.event.clear()
                        self._serve_queue()
                        continue
                    error = self.unavailable()
                    if error is not None:
                        return None, error
                    if deadline - time.monotonic() <= 0:
                        self._counters.add("busy_rejections")
                        return None, self.busy_error(
                            f"busy: no worker of {self.spec.name} {self.spec.version} became "
                            f"free within the queue timeout of {self.config.queue_timeout_ms} ms"
                        )
                    waiter.event.clear()
        finally:
            with self._cond:
                if waiter in self._queue:
                    self._queue.remove(waiter)
                if waiter.worker is not None:  # handed one as we gave up: pass it on
                    self._offer(waiter.worker)
                    waiter.worker = None

    def _prune_idle(self) -> None:
        """Drop idle workers that died or retire (caller holds the condition)."""
        self._idle = [w for w in self._idle if w.state == "READY" and not w.retire]

    def _offer(self, worker: Worker) -> None:
        """Give a free worker to the oldest waiter, else make it idle (caller holds the lock)."""
        worker.leased = False
        if worker.state != "READY" or worker.retire or worker not in self._workers:
            self._cond.notify_all()
            return
        if self._queue:
            waiter = self._queue.popleft()
            worker.leased = True
            waiter.worker = worker
            waiter.event.set()
        else:
            self._idle.append(worker)
        self._cond.notify_all()

    def _wake_waiters(self) -> None:
        """Wake every queued caller to re-check the pool's state (caller holds the lock)."""
        for waiter in self._queue:
            waiter.event.set()
        self._cond.notify_all()

    def _serve_queue(self) -> None:
        """Hand idle workers to waiters in arrival order (caller holds the condition)."""
        self._prune_idle()
        while self._idle and self._queue:
            self._offer(self._idle.pop(0))

    def release(self, worker: Worker) -> None:
        """Give a worker back after a call; a retiring or dead one is terminated and replaced."""
        if worker.retire and worker.state == "READY":
            worker.terminate("restart requested by the algorithm (FatalError)")
        bloated = self._above_recycle_limit(worker)
        with self._cond:
            worker.leased = False
            retired = worker.id in self._retiring and worker in self._workers
            if retired:  # its replacement is already serving
                self._retiring.discard(worker.id)
                self._workers.remove(worker)
            if worker.state == "READY" and worker in self._workers:
                self.breaker.survived()
                self._offer(worker)
                if bloated and worker.id not in self._recycling and self.state == READY:
                    self._recycling.add(worker.id)
                    self._starting += 1  # so a loss meanwhile does not start a second one
                    self._start_thread(lambda: self._recycle(worker))
            elif worker.state == "READY":  # the pool stopped meanwhile, or it was replaced
                threading.Thread(target=self._stop_workers, args=([worker],), daemon=True).start()
            self._cond.notify_all()

    def _above_recycle_limit(self, worker: Worker) -> bool:
        """Whether a worker coming back from a call holds more memory than max_worker_rss_mb."""
        limit = self.memory.recycle_above
        if not limit or worker.state != "READY" or worker.id in self._recycling:
            return False
        rss = rss_bytes(worker.pid)
        return rss is not None and rss > limit

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
            if self.state not in (READY, DRAINING):
                doomed.append(new)
            else:
                self._workers.append(new)
                self._offer(new)
                self._counters.add("memory_recycles")
                log.info(
                    "worker %s recycled above %s", old.id, megabytes(self.memory.recycle_above)
                )
                if old in self._workers and old.leased:
                    self._retiring.add(old.id)
                elif old in self._workers:
                    self._workers.remove(old)
                    if old in self._idle:
                        self._idle.remove(old)
                    doomed.append(old)
        if doomed:
            self._stop_workers(doomed)

    def _start_thread(self, target: Callable[[], None]) -> None:
        """Run a start/replace thread that stop() joins (caller holds the condition)."""
        thread = threading.Thread(target=target, daemon=True)
        self._start_threads = [t for t in self._start_threads if t.is_alive()]
        self._start_threads.append(thread)
        thread.start()

    def _watch_memory(self, worker: Worker) -> None:
        """Kill a worker above worker_memory_limit_mb; its call answers 1004."""
        limit = self.memory.kill_above
        if not limit or worker.state != "READY":
            return
        rss = rss_bytes(worker.pid)
        if rss is not None and rss > limit:
            self._counters.add("memory_kills")
            worker.lose(
                f"worker memory {megabytes(rss)} above the hard limit of {megabytes(limit)} "
                "(worker_memory_limit_mb); it was killed and is replaced",
                kind="memory",
            )

    def call_succeeded(self) -> None:
        """A call completed normally: the restart backoff starts over."""
        with self._cond:
            self.breaker.succeeded()

    # ------------------------------------------------------------------ supervision

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
            if worker.state == "READY" and not worker.heartbeat(now):
                self._counters.add("heartbeat_losses")
                worker.lose(
                    f"heartbeat lost: no pong for more than "
                    f"{self.config.heartbeat_interval_ms + self.config.heartbeat_grace_ms} ms"
                )
            if worker.state == "DEAD" and worker.id not in self._counted:
                self._counted.add(worker.id)
                self._worker_lost(worker, now)
            if worker.state == "DEAD" and not worker.exited():
                # Out of service but still running (e.g. it closed its pipes): it would hold
                # its slots and memory until close(). Idempotent; tick() escalates to SIGKILL.
                worker.terminate(worker.failure or "out of service but still running")
            if worker.state == "DEAD" and worker.exited() and not worker.leased:
                with self._cond:
                    if worker in self._workers:
                        self._workers.remove(worker)
                    if worker in self._idle:
                        self._idle.remove(worker)
                self._dispose(worker)
                self._counted.discard(worker.id)
        self._maybe_restart(now)

    def _worker_lost(self, worker: Worker, now: float) -> None:
        reason = worker.failure or "worker exited"
        if "timed out" in reason:
            self._counters.add("timeouts")
        elif "heartbeat" not in reason and "worker_memory_limit_mb" not in reason:
            self._counters.add("crashes")
        log.warning(
            "worker %s (pid %s) of %s %s lost: %s",
            worker.id,
            worker.pid,
            self.spec.name,
            self.spec.version,
            reason,
        )
        self._record_failure(now, TIMEOUT, reason)

    def _record_failure(self, now: float, code: str, reason: str) -> None:
        with self._cond:
            opened = self.breaker.record_failure(now) and self.state in (READY, DRAINING)
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

    def _fail(self, code: str, message: str) -> None:
        """Mark the pool FAILED (caller holds the condition)."""
        self.state = FAILED
        self.failed_code = code
        self.failed_message = message
        self._wake_waiters()
        log.error("package %s %s FAILED: %s", self.spec.name, self.spec.version, message)

    def _maybe_restart(self, now: float) -> None:
        with self._cond:
            if self.state == FAILED and self.breaker.trial_due(now):
                self.breaker.begin_trial()
                self._counters.add("breaker_trials")
                target = self._trial
            elif self.state not in (READY, DRAINING) or not self.breaker.restart_due(now):
                return
            else:
                live = sum(1 for w in self._workers if w.state != "DEAD")
                if live + self._starting >= self.target:
                    return
                self._starting += 1
                self._counters.add("restarts")
                target = self._replace
            thread = threading.Thread(target=target, daemon=True)
            self._start_threads = [t for t in self._start_threads if t.is_alive()]
            self._start_threads.append(thread)
        thread.start()

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
            keep = worker is not None and self.state == FAILED and self.breaker.state == HALF_OPEN
            if keep and worker is not None:
                self.breaker.trial_passed()
                self.state = READY
                self.failed_code = self.failed_message = None
                self._workers.append(worker)
                self._offer(worker)
                log.warning("package %s %s: trial worker up, breaker closed", *self._names())
            elif self.breaker.state == HALF_OPEN:
                self.breaker.trial_failed(time.monotonic())
                if failure:
                    self.failed_message = f"{self._trip_message}; {failure}"
                    log.error("package %s %s: %s", *self._names(), failure)
            self._cond.notify_all()
        if worker is not None and not keep:
            self._stop_workers([worker])

    def _names(self) -> tuple[str, str]:
        return self.spec.name, self.spec.version

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
            keep = self.state in (READY, DRAINING)
            if keep:
                self._workers.append(worker)
                self._offer(worker)
        if not keep:
            self._stop_workers([worker])

    # ------------------------------------------------------------------ introspection

    def workers(self) -> list[Worker]:
        """The current workers (any state)."""
        with self._cond:
            return list(self._workers)

    def shm_bytes(self) -> int:
        """Bytes of shared memory held by this pool's slot rings."""
        total = 0
        for worker in self.workers():
            with contextlib.suppress(Exception):
                total += int(worker.slots.bytes_in_use)
        return total

    def describe(self) -> dict[str, Any]:
        """State, workers and info for packages()/stats()."""
        with self._cond:
            waiters = len(self._queue)
        out: dict[str, Any] = {
            "name": self.spec.name,
            "version": self.spec.version,
            "state": self.state,
            "workers": [w.info() for w in self.workers()],
            "target_workers": self.target,
            "queued": waiters,
            "info": self.info,
            "transport": self.spec.transport,
        }
        if self.state == FAILED:
            out["error"] = {"error_code": self.failed_code, "message": self.failed_message}
        out.update(self.breaker.describe())
        return out
