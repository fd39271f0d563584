"""The crash-loop breaker of one pool: failure window, restart backoff, open/half-open/closed.

Closed: failures are counted in a sliding window; each one delays the next restart by an
exponential backoff. `crash_loop_failures` failures within `crash_loop_window_s` open it (the
pool is FAILED and refuses calls). After `crash_loop_cooldown_s` it goes half-open: the pool
starts one trial worker. A trial that starts and warms closes it on probation: a worker
failure before some worker survives a whole call re-opens it at once; a failed trial re-opens
it for another cool-down. The class holds no lock: the pool calls it under its own condition.
"""

from __future__ import annotations

import time
from collections import deque

from .config import RunnerConfig

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "CrashLoopBreaker"]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CrashLoopBreaker:
    """Failure bookkeeping and breaker state of one pool (not thread-safe; the pool locks)."""

    def __init__(self, config: RunnerConfig) -> None:
        self.config = config
        self.state = CLOSED
        self.trials = 0
        self.next_trial_at = 0.0  # time.monotonic() of the next trial while open
        self.next_restart_at = 0.0  # time.monotonic() before which no replacement starts
        self.backoff_ms = 0  # the restart delay set by the last failure (shown by describe())
        self._failures: deque[float] = deque()
        self._consecutive = 0
        self._probation = False

    def record_failure(self, now: float) -> bool:
        """Count a worker failure; True when it opens the breaker (the pool must fail)."""
        cfg = self.config
        self._failures.append(now)
        while self._failures and now - self._failures[0] > cfg.crash_loop_window_s:
            self._failures.popleft()
        self._consecutive += 1
        self.backoff_ms = min(
            cfg.restart_backoff_initial_ms * (2 ** (self._consecutive - 1)),
            cfg.restart_backoff_max_ms,
        )
        self.next_restart_at = now + self.backoff_ms / 1000
        if self.state != CLOSED:
            return False
        if self._probation or len(self._failures) >= cfg.crash_loop_failures:
            self._open(now)
            return True
        return False

    def failures_in_window(self) -> int:
        """How many failures the sliding window holds."""
        return len(self._failures)

    def succeeded(self) -> None:
        """A call completed normally: the restart backoff starts from the beginning."""
        self._consecutive = 0

    def survived(self) -> None:
        """A worker came back alive from a whole lease (all phases of a call): probation ends."""
        self._probation = False

    def restart_due(self, now: float) -> bool:
        """Whether the backoff allows starting a replacement now."""
        return now >= self.next_restart_at

    def trial_due(self, now: float) -> bool:
        """Whether the breaker is open and its cool-down is over."""
        return self.state == OPEN and now >= self.next_trial_at

    def begin_trial(self) -> None:
        """Open -> half-open: one trial worker is being started."""
        self.state = HALF_OPEN
        self.trials += 1

    def trial_passed(self) -> None:
        """Half-open -> closed, on probation; the failure window starts empty."""
        self.state = CLOSED
        self._failures.clear()
        self._consecutive = 0
        self.next_restart_at = 0.0
        self._probation = True

    def trial_failed(self, now: float) -> None:
        """Half-open -> open for another cool-down."""
        self._open(now)

    def _open(self, now: float) -> None:
        self.state = OPEN
        self._probation = False
        self.next_trial_at = now + self.config.crash_loop_cooldown_s

    def describe(self, now: float | None = None) -> dict[str, object]:
        """State and next trial time (monotonic delay and wall-clock epoch ms) for answers."""
        now = time.monotonic() if now is None else now
        out: dict[str, object] = {"breaker": self.state, "breaker_trials": self.trials}
        if self.state == OPEN:
            delay_s = max(0.0, self.next_trial_at - now)
            out["next_trial_in_ms"] = int(delay_s * 1000)
            out["next_trial_at_ms"] = int((time.time() + delay_s) * 1000)
        elif self.state == HALF_OPEN:
            out["next_trial_in_ms"] = 0
        return out
