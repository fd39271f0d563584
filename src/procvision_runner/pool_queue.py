"""The hand-off queue of one pool: idle workers and the FIFO of callers waiting for one.

Waiters are served in arrival order: an idle worker is taken at once only when nobody waits,
and a freed worker goes straight to the oldest waiter instead of back to the idle list, where
the releasing caller could retake it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .states import WorkerState
from .worker import Worker

__all__ = ["HandOff"]

Answer = tuple[Worker | None, dict[str, Any] | None]


class _Waiter:
    """One caller queued for a worker; offer() fills `worker` (hand-off in arrival order)."""

    __slots__ = ("event", "worker")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.worker: Worker | None = None


def _serviceable(worker: Worker) -> bool:
    return worker.state == WorkerState.READY and not worker.retire


class HandOff:
    """Idle workers and waiting callers of one pool, guarded by the pool's condition."""

    def __init__(
        self,
        cond: threading.Condition,
        label: str,
        members: list[Worker],
        unavailable: Callable[[], dict[str, Any] | None],
        busy: Callable[[str], dict[str, Any]],
    ) -> None:
        self._cond = cond
        self._label = label  # "name version" of the package, for the busy answers
        self._members = members  # the pool's workers: a freed non-member is not offered
        self._unavailable = unavailable  # the pool's refusal when FAILED or stopped
        self._busy = busy  # the pool's backpressure answer, counted
        self.idle: list[Worker] = []
        self.waiters: deque[_Waiter] = deque()  # oldest first

    def take(self, timeout_s: float, queue_size: int, prefer: str | None) -> Answer:
        """A worker (leased) or an error frame: unavailable, queue full, or no worker in time."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            error = self._unavailable()
            if error is not None:
                return None, error
            self.prune()
            if self.idle and not self.waiters:
                first = next((w for w in self.idle if w.id == prefer), self.idle[0])
                self.idle.remove(first)
                first.leased = True
                return first, None
            if len(self.waiters) >= queue_size:
                return None, self._busy(
                    f"busy: {len(self.waiters)} calls already queued for {self._label} "
                    f"(queue_size {queue_size})"
                )
            waiter = _Waiter()
            self.waiters.append(waiter)
            self.serve()
        try:
            return self._wait(waiter, deadline, timeout_s)
        finally:
            with self._cond:
                if waiter in self.waiters:
                    self.waiters.remove(waiter)
                if waiter.worker is not None:  # handed one as we gave up: pass it on
                    self.offer(waiter.worker)
                    waiter.worker = None

    def _wait(self, waiter: _Waiter, deadline: float, timeout_s: float) -> Answer:
        # Each waiter sleeps on its own event: a hand-off wakes exactly the caller it serves,
        # with no herd of woken waiters racing it for the pool's lock.
        while True:
            waiter.event.wait(max(0.0, deadline - time.monotonic()))
            with self._cond:
                chosen, waiter.worker = waiter.worker, None
                if chosen is not None:
                    if _serviceable(chosen):
                        return chosen, None
                    # Died between the hand-off and our wake-up: keep our place in front.
                    chosen.leased = False
                    self.waiters.appendleft(waiter)
                    waiter.event.clear()
                    self.serve()
                    continue
                error = self._unavailable()
                if error is not None:
                    return None, error
                if deadline - time.monotonic() <= 0:
                    return None, self._busy(
                        f"busy: no worker of {self._label} became free within the queue "
                        f"timeout of {round(timeout_s * 1000)} ms"
                    )
                waiter.event.clear()

    def prune(self) -> None:
        """Drop idle workers that died or retire (caller holds the condition)."""
        self.idle = [w for w in self.idle if _serviceable(w)]

    def offer(self, worker: Worker) -> None:
        """Give a free worker to the oldest waiter, else make it idle (caller holds the lock)."""
        worker.leased = False
        if not _serviceable(worker) or worker not in self._members:
            self._cond.notify_all()
            return
        if self.waiters:
            waiter = self.waiters.popleft()
            worker.leased = True
            waiter.worker = worker
            waiter.event.set()
        else:
            self.idle.append(worker)
        self._cond.notify_all()

    def serve(self) -> None:
        """Hand idle workers to waiters in arrival order (caller holds the condition)."""
        self.prune()
        while self.idle and self.waiters:
            self.offer(self.idle.pop(0))

    def wake_all(self) -> None:
        """Wake every queued caller to re-check the pool's state (caller holds the lock)."""
        for waiter in self.waiters:
            waiter.event.set()
        self._cond.notify_all()

    def discard(self, worker: Worker) -> None:
        """Forget an idle worker that leaves the pool (caller holds the condition)."""
        if worker in self.idle:
            self.idle.remove(worker)
