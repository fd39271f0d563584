"""Calls on the main thread: algorithm hooks, the phase handlers and the step hooks."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import protocol
from ..base import BaseAlgorithm
from ..contract import to_jsonable
from ..errors import ALGORITHM_EXCEPTION, INVALID_RESULT, PROTOCOL_ERROR
from ..generation import EXECUTE_ONLY, LIFECYCLE, api_of
from . import execute_only, reply, step
from .fields import as_dim, as_step
from .outcome import (
    REPR_LIMIT,
    Outcome,
    evaluate_result,
    exception_outcome,
    json_safe,
)
from .prefetch import prefetch_image
from .sessions import DEFAULT_SESSION_ID, SessionCache, SessionEntry
from .strict_stdio import StdoutGuard

__all__ = ["DEFAULT_MAX_DEFECTS", "METHODS", "CallHandler", "prefetch_image"]

DEFAULT_MAX_DEFECTS = 20

# phase -> (method name, required); optional hooks missing on a non-BaseAlgorithm class are
# no-ops when the adapter calls them itself, exactly like BaseAlgorithm's defaults, but an
# explicit call for one answers "does not implement <method>" (contract section 6).
METHODS: dict[str, tuple[str, bool]] = {
    "info": ("get_info", True),
    "setup": ("setup", False),
    "teardown": ("teardown", False),
    "reset": ("reset", False),
    "on_step_start": ("on_step_start", False),
    "on_step_finish": ("on_step_finish", False),
    "pre": ("pre_execute", True),
    "execute": ("execute", True),
}

# BaseAlgorithm's optional hooks are no-ops; the adapter skips calling them (same effect).
_BASE_HOOKS: dict[str, Any] = {
    name: getattr(BaseAlgorithm, name) for name in ("on_step_start", "on_step_finish")
}


class CallHandler:
    """Runs the algorithm's methods for call frames; WorkerLoop adds the pipes around it."""

    def __init__(
        self,
        algorithm: Any,
        session_capacity: int,
        *,
        root: Path | None = None,
        stdout_guard: StdoutGuard | None = None,
    ) -> None:
        self.algorithm = algorithm
        # Told once, from the class's execute signature (generation module); never per call.
        self.api = api_of(type(algorithm)) or LIFECYCLE
        self.root = root
        self.stdout_guard = stdout_guard
        self.sessions = SessionCache(session_capacity)
        self.setup_done = False
        self.setup_failure: Outcome | None = None
        self.torn_down = False
        # Set by the first explicit on_step_start/on_step_finish: the host drives the hooks.
        self.host_hooks = False
        self._last_prefetched: Any = None

    def _method(self, name: str) -> Callable[..., Any] | None:
        method = getattr(self.algorithm, name, None)
        return method if callable(method) else None

    def _overridden(self, name: str) -> bool:
        """Whether hook `name` does anything: False when missing or BaseAlgorithm's no-op."""
        method = self._method(name)
        if method is None:
            return False
        return getattr(method, "__func__", None) is not _BASE_HOOKS.get(name)

    def _run(self, name: str, *args: Any) -> tuple[Any, BaseException | None, float]:
        """Call an algorithm method; (value, exception, milliseconds). Missing optional = no-op."""
        method = self._method(name)
        start = time.perf_counter()
        if method is None:
            return None, None, 0.0
        try:
            value = method(*args)
        except (Exception, SystemExit) as exc:
            return None, exc, (time.perf_counter() - start) * 1000.0
        return value, None, (time.perf_counter() - start) * 1000.0

    @property
    def is_set_up(self) -> bool:
        """Whether setup ran and no teardown followed it."""
        return self.setup_done and not self.torn_down

    def ensure_setup(self) -> tuple[Outcome | None, float]:
        """Run setup unless it already ran since the last teardown; (its failure, ms spent now).

        A host of the adapter era sends teardown when its window closes and setup when it
        reopens: setup then runs again. A failed setup is never retried in this process.
        """
        if self.setup_failure is not None or self.is_set_up:
            return self.setup_failure, 0.0
        self.setup_done = True
        self.torn_down = False
        _, exc, ms = self._run("setup")
        if exc is not None:
            failure = exception_outcome(exc, "setup")
            failure.restart_worker = True
            self.setup_failure = failure
        return self.setup_failure, ms

    def teardown_once(self) -> Outcome | None:
        """Run teardown unless it already ran since the last setup (so once at exit at most)."""
        if self.torn_down:
            return None
        self.torn_down = True
        _, exc, _ms = self._run("teardown")
        return exception_outcome(exc, "teardown") if exc is not None else None

    # --- calls

    def _session_for(self, fields: dict[str, Any]) -> SessionEntry:
        spec = fields.get("session")
        context: dict[str, Any] | None = None
        session_id: Any = None
        if isinstance(spec, dict):
            session_id = spec.get("id")
            raw_context = spec.get("context")
            context = raw_context if isinstance(raw_context, dict) else None
        elif isinstance(spec, (str, int)) and not isinstance(spec, bool):
            session_id = spec
        if session_id is None:
            session_id = fields.get("session_id")
        if session_id is None or session_id == "":
            session_id = DEFAULT_SESSION_ID
        entry = self.sessions.get(str(session_id), context)
        state = fields.get("session_state")
        if isinstance(state, dict):
            entry.session._restore(state)
        return entry

    def handle_call(self, message: dict[str, Any], received: float) -> dict[str, Any]:
        """Run one call on the main thread and return the frame that answers it."""
        if self.api == EXECUTE_ONLY:
            answer = execute_only.handle(self, message, received)
            if answer is not None:
                return answer
        request_id = message.get("request_id")
        fields = protocol.call_fields(message)
        phase = fields.get("phase")
        if phase is None or phase == "":
            phase = "execute"  # every earlier adapter read a call without phase as execute
        if phase == "step":
            return step.call_step(self, request_id, fields, received)
        if not isinstance(phase, str) or phase not in METHODS:  # a list is not even hashable
            text = f"unknown phase {json_safe(phase)!r}"[:REPR_LIMIT]
            return protocol.error(request_id, text, PROTOCOL_ERROR)
        method_name, _required = METHODS[phase]
        if self._method(method_name) is None:
            return protocol.error(
                request_id, f"does not implement {method_name}", ALGORITHM_EXCEPTION
            )
        step_index = as_step(fields.get("step_index"))
        if phase in ("pre", "execute", "on_step_start", "on_step_finish") and step_index is None:
            return protocol.error(
                request_id,
                f"{phase} needs an integer step_index, got {fields.get('step_index')!r}",
                PROTOCOL_ERROR,
            )
        timings: dict[str, float] = {"algorithm_ms": 0.0, "hooks_ms": 0.0}
        entry: SessionEntry | None = None
        if phase == "teardown":
            outcome = self._call_teardown()
        else:
            ran_now = self.setup_failure is None and not self.is_set_up
            failure, setup_ms = self.ensure_setup()
            if ran_now:
                timings["setup_ms"] = setup_ms
            if phase == "setup" and (ran_now or failure is None):
                outcome = failure or Outcome("OK", data={"ran": ran_now})
            elif failure is not None:
                outcome = self._setup_failed_again()
            elif phase == "info":
                outcome = self._call_info(timings)
            else:
                entry = self._session_for(fields)
                if phase == "reset":
                    outcome = self._call_reset(entry, timings)
                elif phase == "on_step_start":
                    assert step_index is not None
                    outcome = self._explicit_step_start(entry, step_index, timings)
                elif phase == "on_step_finish":
                    assert step_index is not None
                    outcome = self._explicit_step_finish(entry, step_index, fields, timings)
                else:
                    assert step_index is not None
                    outcome = self._call_step(phase, entry, step_index, fields, timings)
        return reply.result_frame(
            self.algorithm, request_id, phase, step_index, outcome, entry, timings, received
        )

    def _setup_failed_again(self) -> Outcome:
        assert self.setup_failure is not None
        first = self.setup_failure
        return Outcome(
            status="ERROR",
            message=f"setup failed earlier in this worker: {first.message}",
            error_code=first.error_code,
            restart_worker=True,
        )

    def _call_teardown(self) -> Outcome:
        ran = not self.torn_down
        failure = self.teardown_once()
        return failure or Outcome("OK", data={"ran": ran})

    def _call_info(self, timings: dict[str, float]) -> Outcome:
        value, exc, ms = self._run("get_info")
        timings["algorithm_ms"] = ms
        if exc is not None:
            return exception_outcome(exc, "get_info")
        try:
            info = to_jsonable(value)
        except TypeError as err:
            return Outcome(
                "ERROR",
                f"invalid get_info result: {err}",
                INVALID_RESULT,
                original=json_safe(value),
            )
        if not isinstance(info, dict):
            return Outcome(
                "ERROR",
                f"invalid get_info result: must be a dict, not {type(value).__name__}",
                INVALID_RESULT,
                original=info,
            )
        return Outcome("OK", data={"info": info})

    def _call_reset(self, entry: SessionEntry, timings: dict[str, float]) -> Outcome:
        _, exc, ms = self._run("reset", entry.session)
        timings["algorithm_ms"] = ms
        entry.session._clear()
        entry.steps.clear()
        if exc is not None:
            return exception_outcome(exc, "reset")
        return Outcome("OK")

    def _start_step(
        self, entry: SessionEntry, step_index: int, timings: dict[str, float]
    ) -> Outcome | None:
        entry.steps.add(step_index)
        if not self._overridden("on_step_start"):
            return None  # the default hook does nothing: skip copying the context for it
        _, exc, ms = self._run("on_step_start", step_index, entry.session, entry.session.context)
        timings["hooks_ms"] += ms
        return exception_outcome(exc, "on_step_start") if exc is not None else None

    def _finish_step(
        self, entry: SessionEntry, step_index: int, outcome: Outcome, timings: dict[str, float]
    ) -> Outcome:
        entry.steps.discard(step_index)
        if not self._overridden("on_step_finish"):
            return outcome  # the default hook does nothing: skip building its result copy
        _, exc, ms = self._run("on_step_finish", step_index, entry.session, outcome.public())
        timings["hooks_ms"] += ms
        if exc is None:
            return outcome
        failed = exception_outcome(exc, "on_step_finish")
        failed.original = outcome.public()
        return failed

    def _explicit_step_start(
        self, entry: SessionEntry, step_index: int, timings: dict[str, float]
    ) -> Outcome:
        # The first explicit hook call hands the hooks to the host (adapter-era hosts send them
        # with their own session ids); from then on each explicit call runs the hook once.
        switching = not self.host_hooks
        self.host_hooks = True
        if switching and step_index in entry.steps:
            return Outcome("OK", data={"ran": False})  # already started implicitly: not twice
        failure = self._start_step(entry, step_index, timings)
        entry.steps.discard(step_index)  # host-driven: the adapter tracks no started steps
        return failure or Outcome("OK", data={"ran": True})

    def _explicit_step_finish(
        self,
        entry: SessionEntry,
        step_index: int,
        fields: dict[str, Any],
        timings: dict[str, float],
    ) -> Outcome:
        self.host_hooks = True
        given = fields.get("result")
        basis = Outcome("OK")
        if isinstance(given, dict):
            status = given.get("status")
            basis = Outcome(
                status if isinstance(status, str) else "OK",
                str(given.get("message") or ""),
                given.get("error_code"),
                dict(given.get("data") or {}) if isinstance(given.get("data"), dict) else {},
            )
        finished = self._finish_step(entry, step_index, basis, timings)
        if finished is basis:
            return Outcome("OK", data={"ran": True})
        return finished

    def _call_step(
        self,
        phase: str,
        entry: SessionEntry,
        step_index: int,
        fields: dict[str, Any],
        timings: dict[str, float],
    ) -> Outcome:
        if not self.host_hooks and step_index not in entry.steps:
            failure = self._start_step(entry, step_index, timings)
            if failure is not None:
                return self._finish_step(entry, step_index, failure, timings)
        user_params = fields.get("user_params")
        if user_params is None:
            user_params = {}
        shared_mem_id = fields.get("shared_mem_id") or ""
        image_meta = fields.get("image_meta")
        if image_meta is None:
            image_meta = {}
        if shared_mem_id and shared_mem_id != self._last_prefetched:
            # A Runner reuses a few slots: a repeated name is already in the attach cache (and
            # if its segment was replaced meanwhile, the algorithm's read re-attaches anyway).
            start = time.perf_counter()
            if prefetch_image(str(shared_mem_id)):
                self._last_prefetched = shared_mem_id
            timings["attach_ms"] = (time.perf_counter() - start) * 1000.0
        method = "pre_execute" if phase == "pre" else "execute"
        if self.stdout_guard is not None:
            self.stdout_guard.begin()
        raw, exc, ms = self._run(
            method,
            step_index,
            fields.get("pid"),
            entry.session,
            user_params,
            shared_mem_id,
            image_meta,
        )
        timings["algorithm_ms"] = ms
        polluted = self._stdout_pollution(method)
        if polluted is not None:
            outcome = Outcome("ERROR", polluted, PROTOCOL_ERROR)
        elif exc is not None:
            outcome = exception_outcome(exc, method)
        else:
            meta = image_meta if isinstance(image_meta, dict) else {}
            max_defects = as_step(fields.get("max_defects"))
            outcome = evaluate_result(
                raw,
                phase,
                as_dim(meta.get("width")),
                as_dim(meta.get("height")),
                DEFAULT_MAX_DEFECTS if max_defects is None else max_defects,
            )
        if not self.host_hooks and (phase == "execute" or outcome.status == "ERROR"):
            outcome = self._finish_step(entry, step_index, outcome, timings)
        return outcome

    def _stdout_pollution(self, method: str) -> str | None:
        """Under PROC_STRICT_STDIO=1: why a call that wrote to stdout failed, else None."""
        return reply.stdout_pollution(self.stdout_guard, method)
