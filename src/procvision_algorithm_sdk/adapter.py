"""The worker process: `python -m procvision_algorithm_sdk.adapter` runs one algorithm over frames.

Start-up order matters (contract sections 6 and 10): the protocol is moved to private copies of
fd 0 and fd 1 and fd 1 is pointed at stderr *before* any algorithm code is imported, then the
algorithm is imported and instantiated, and only then is `hello` sent. A reader thread decodes
frames and answers `ping` at once; calls run on the main thread one at a time. The wire details
are in docs/architecture.md, "Worker protocol details".
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import math
import os
import queue
import re
import signal
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import protocol
from .base import BaseAlgorithm
from .contract import Problem, check_execute_result, check_pre_execute_result, to_jsonable
from .errors import (
    ALGORITHM_EXCEPTION,
    COORDINATE_INVALID,
    INVALID_RESULT,
    MODEL_NOT_FOUND,
    PROTOCOL_ERROR,
    FatalError,
    ProcVisionError,
    is_retryable,
)
from .logger import StructuredLogger, install_logging_bridge
from .session import Session

EXIT_OK = 0
EXIT_START_FAILED = 2
EXIT_STREAM_BROKEN = 3

ENTRY_ENV = "PROC_ENTRY_POINT"
ROOT_ENV = "PROC_ALGO_ROOT"
SESSION_CACHE_ENV = "PROC_SESSION_CACHE"
DEFAULT_SESSION_CACHE = 1024
DEFAULT_SESSION_ID = "default"
DEFAULT_MAX_DEFECTS = 20
# How often a disarmed heartbeat watchdog (interval 0) looks for new settings.
WATCHDOG_IDLE_S = 0.5
# After teardown the interpreter may still wait for threads the algorithm left running.
EXIT_GRACE_S = 5.0
_REPR_LIMIT = 2000

BUSY_MESSAGE = "busy: a call is already running in this worker; calls are never queued"

_ENTRY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

# phase -> (method name, required); optional hooks missing on a non-BaseAlgorithm class are
# no-ops, exactly like BaseAlgorithm's defaults.
_METHODS: dict[str, tuple[str, bool]] = {
    "info": ("get_info", True),
    "setup": ("setup", False),
    "teardown": ("teardown", False),
    "reset": ("reset", False),
    "on_step_start": ("on_step_start", False),
    "on_step_finish": ("on_step_finish", False),
    "pre": ("pre_execute", True),
    "execute": ("execute", True),
}

_log = StructuredLogger()
# BaseAlgorithm's optional hooks are no-ops; the adapter skips calling them (same effect).
_BASE_HOOKS: dict[str, Any] = {
    name: getattr(BaseAlgorithm, name) for name in ("on_step_start", "on_step_finish")
}


class StartupError(Exception):
    """The algorithm could not be found, imported or instantiated (reported as 1003, exit 2)."""


# ---------------------------------------------------------------------------------------------
# start-up: stdio protection and entry discovery


def protect_stdio() -> tuple[int, int]:
    """Move the protocol to private fds; point fd 1 at stderr and fd 0 at /dev/null.

    Returns (protocol_in, protocol_out). Both are non-inheritable, so processes the algorithm
    starts never see protocol bytes either.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()
    protocol_out = os.dup(1)
    os.dup2(2, 1)
    protocol_in = os.dup(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(devnull, 0)
    finally:
        os.close(devnull)
    # sys.stdout still wraps fd 1 (now stderr); line buffering keeps prints timely in the logs.
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        with contextlib.suppress(Exception):
            reconfigure(line_buffering=True)
    return protocol_in, protocol_out


def _read_pyproject_entry(path: Path) -> str | None:
    """Return `[tool.procvision.algorithm] entry_point` from a pyproject.toml, if present."""
    text = path.read_text(encoding="utf-8")
    try:
        import tomllib  # Python >= 3.11

        table: Any = tomllib.loads(text)
        for key in ("tool", "procvision", "algorithm"):
            table = table.get(key) if isinstance(table, dict) else None
        value = table.get("entry_point") if isinstance(table, dict) else None
        return value if isinstance(value, str) else None
    except ImportError:
        return entry_point_from_toml_text(text)


def entry_point_from_toml_text(text: str) -> str | None:
    """Python 3.10 without tomllib: find the one key we need, line by line."""
    in_table = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            in_table = line.replace(" ", "") == "[tool.procvision.algorithm]"
            continue
        if in_table:
            match = re.match(r"""entry_point\s*=\s*(["'])(.*?)\1\s*(#.*)?$""", line)
            if match:
                return match.group(2)
    return None


def discover_entry(
    cli_entry: str | None, environ: Mapping[str, str], cwd: Path
) -> tuple[str, str, Path | None]:
    """Return (entry_point, where it came from, root dir to import from).

    Order: `--entry`, PROC_ENTRY_POINT, manifest.json (PROC_ALGO_ROOT, then cwd), then
    `[tool.procvision.algorithm] entry_point` in pyproject.toml (same dirs).
    """
    root_env = environ.get(ROOT_ENV)
    roots: list[Path] = []
    if root_env:
        roots.append(Path(root_env))
    roots.append(cwd)
    if cli_entry:
        return cli_entry, "--entry", Path(root_env) if root_env else None
    if environ.get(ENTRY_ENV):
        return environ[ENTRY_ENV], ENTRY_ENV, Path(root_env) if root_env else None
    for root in roots:
        manifest = root / "manifest.json"
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise StartupError(f"{manifest} is not readable JSON: {exc}") from exc
            value = data.get("entry_point") if isinstance(data, dict) else None
            if not isinstance(value, str):
                raise StartupError(f"{manifest} has no entry_point string")
            return value, str(manifest), root
    for root in roots:
        pyproject = root / "pyproject.toml"
        if pyproject.is_file():
            try:
                value = _read_pyproject_entry(pyproject)
            except (OSError, ValueError) as exc:
                raise StartupError(f"{pyproject} is not readable TOML: {exc}") from exc
            if value:
                return value, str(pyproject), root
    raise StartupError(
        "no entry point: pass --entry module:Class, set PROC_ENTRY_POINT, or run in a directory "
        "with manifest.json or pyproject.toml [tool.procvision.algorithm] entry_point"
    )


def load_algorithm(entry: str, root: Path | None) -> Any:
    """Import `module:Class` (root first on sys.path) and return an instance."""
    if not _ENTRY.match(entry):
        raise StartupError(f"entry point {entry!r} is not of the form module.path:ClassName")
    if root is not None:
        root_text = str(root.resolve())
        if root_text not in sys.path:
            sys.path.insert(0, root_text)
    module_name, _, attr_path = entry.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for attr in attr_path.split("."):
            target = getattr(target, attr)
    except Exception as exc:
        raise StartupError(f"cannot import {entry}: {type(exc).__name__}: {exc}") from exc
    if not callable(target):
        raise StartupError(f"entry point {entry} is not a class")
    try:
        return target()
    except Exception as exc:
        raise StartupError(f"cannot instantiate {entry}: {type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# small helpers


def json_safe(value: Any, depth: int = 0) -> Any:
    """Return a JSON-ready copy of `value`; anything that is not plain JSON becomes its repr."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**63 else repr(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth < 50 and isinstance(value, dict):
        return {str(k): json_safe(v, depth + 1) for k, v in value.items()}
    if depth < 50 and isinstance(value, (list, tuple)):
        return [json_safe(v, depth + 1) for v in value]
    try:
        converted = to_jsonable(value)  # numpy scalars become numbers
        if not isinstance(converted, (dict, list)):
            return converted
    except Exception:
        pass
    try:
        text = repr(value)
    except Exception:
        text = f"<unrepresentable {type(value).__name__}>"
    return text if len(text) <= _REPR_LIMIT else text[:_REPR_LIMIT] + "...(truncated)"


def _as_step(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _as_dim(value: Any) -> int | None:
    step = _as_step(value)
    return step if step is not None and step > 0 else None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class Outcome:
    """What one call produced, before it becomes a result frame."""

    status: str
    message: str = ""
    error_code: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    debug: Any = None
    extra: dict[str, Any] | None = None
    original: Any = None
    problems: list[dict[str, str]] | None = None
    retryable: bool = False
    restart_worker: bool = False

    def public(self) -> dict[str, Any]:
        """The outcome as the algorithm's on_step_finish hook sees it."""
        out: dict[str, Any] = {
            "status": self.status,
            "message": self.message,
            "error_code": self.error_code,
            "data": dict(self.data),
        }
        if self.debug is not None:
            out["debug"] = self.debug
        return out


def exception_outcome(exc: BaseException, what: str) -> Outcome:
    """Map an exception raised by algorithm code to an ERROR outcome (traceback to stderr)."""
    if isinstance(exc, ProcVisionError):
        code = str(exc.error_code)
        # A bare ProcVisionError("camera timeout", error_code="1005") is as retryable as 1005.
        retryable = bool(exc.retryable) or is_retryable(code)
    else:
        code = ALGORITHM_EXCEPTION
        retryable = False
    restart = isinstance(exc, FatalError)
    message = f"{what} raised {_describe(exc)}"
    _log.error(message, error_code=code, phase=what, exc_info=exc)
    return Outcome(
        status="ERROR",
        message=message,
        error_code=code,
        retryable=retryable,
        restart_worker=restart,
    )


_RESULT_KEYS = ("status", "message", "error_code", "data", "debug")


def evaluate_result(
    raw: Any,
    kind: str,
    image_width: int | None,
    image_height: int | None,
    max_defects: int,
) -> Outcome:
    """Check an algorithm's pre_execute/execute return value against the contract."""
    method = "pre_execute" if kind == "pre" else "execute"

    def check(value: Any) -> list[Problem]:
        if kind == "pre":
            return check_pre_execute_result(value, image_width, image_height)
        return check_execute_result(value, image_width, image_height, max_defects)

    # A result that passes as is is plain JSON already; only a failing one pays for conversion.
    value: Any = raw
    problems = check(raw)
    if problems:
        try:
            value = to_jsonable(raw)
        except TypeError:
            value = json_safe(raw)
        else:
            problems = check(value)
    if problems:
        first = problems[0]
        code = first.code if first.code in (INVALID_RESULT, COORDINATE_INVALID) else INVALID_RESULT
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        where = f"{first.where}: " if first.where else ""
        return Outcome(
            status="ERROR",
            message=f"invalid {method} result: {where}{first.message}{more}",
            error_code=code,
            original=value,
            problems=[p.to_dict() for p in problems],
        )
    assert isinstance(value, dict)  # the checks refuse anything else
    extra = {k: v for k, v in value.items() if k not in _RESULT_KEYS}
    message = value.get("message")
    algorithm_code = value.get("error_code")
    return Outcome(
        status=value["status"],
        message=message if isinstance(message, str) else "",
        error_code=algorithm_code if algorithm_code is None else str(algorithm_code),
        data=dict(value.get("data") or {}),
        debug=value.get("debug"),
        extra=extra or None,
    )


@dataclass
class SessionEntry:
    """A session the worker holds, and the steps of it started but not yet finished."""

    session: Session
    steps: set[int] = field(default_factory=set)


class SessionCache:
    """Sessions by id, least recently used dropped beyond `capacity`."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._entries: OrderedDict[str, SessionEntry] = OrderedDict()

    def get(self, session_id: str, context: dict[str, Any] | None) -> SessionEntry:
        """Return the entry of `session_id`, creating it (with `context`) when unknown."""
        entry = self._entries.get(session_id)
        if entry is not None:
            self._entries.move_to_end(session_id)
            return entry
        entry = SessionEntry(Session(session_id, context))
        self._entries[session_id] = entry
        while len(self._entries) > self.capacity:
            dropped, _ = self._entries.popitem(last=False)
            _log.debug("session dropped from the worker cache", session_id=dropped)
        return entry

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._entries


# ---------------------------------------------------------------------------------------------
# the worker


class Worker:
    """One algorithm instance served over the frame protocol."""

    def __init__(
        self,
        algorithm: Any,
        protocol_in: int,
        protocol_out: int,
        *,
        entry_point: str = "",
        session_capacity: int = DEFAULT_SESSION_CACHE,
    ) -> None:
        self.algorithm = algorithm
        self.entry_point = entry_point
        self.protocol_in = protocol_in
        self.protocol_out = protocol_out
        self.sessions = SessionCache(session_capacity)
        self.events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._call_pending = False
        self._closing = False
        self._signalled = False
        self.setup_done = False
        self.setup_failure: Outcome | None = None
        self.torn_down = False
        self.heartbeat_interval_ms = 0
        self.heartbeat_grace_ms = 0
        self._last_frame = time.monotonic()
        self._watchdog: threading.Thread | None = None
        self._parent_pid = os.getppid()
        self._last_prefetched: Any = None

    # --- output

    def send(self, message: dict[str, Any]) -> bool:
        """Write one frame; False if the Runner's end of the pipe is gone.

        A message that cannot be encoded (an echoed value too large or too deep) goes out as an
        `error` frame (1010, request_id null) instead, so the worker always answers and lives on.
        """
        try:
            data = protocol.encode_frame(message)
        except Exception as exc:
            kind = message.get("type")
            text = f"{kind if isinstance(kind, str) else 'a'} frame could not be encoded: "
            text += _describe(exc)[:_REPR_LIMIT]
            _log.error(text, error_code=PROTOCOL_ERROR)
            data = protocol.encode_frame(protocol.error(None, text, PROTOCOL_ERROR))
        return self._write(data)

    def _write(self, data: bytes) -> bool:
        """Write one encoded frame; False if the Runner's end of the pipe is gone."""
        try:
            with self._write_lock:
                view = memoryview(data)
                while view:
                    written = os.write(self.protocol_out, view)
                    view = view[written:]
        except OSError:
            self.events.put(("eof", "protocol output closed"))
            return False
        return True

    def capabilities(self) -> list[str]:
        """The capabilities this algorithm really has (required methods it lacks are left out)."""
        caps = ["ping", "call", "shutdown", "shared_memory:v1"]
        for phase in protocol.PHASES:
            method, required = _METHODS[phase]
            if not required or callable(getattr(self.algorithm, method, None)):
                caps.append(phase)
        return caps

    def hello(self) -> dict[str, Any]:
        """The worker's hello frame."""
        frame = protocol.hello_from_worker(tuple(self.capabilities()))
        frame["worker_pid"] = os.getpid()
        frame["entry_point"] = self.entry_point
        frame["base_algorithm"] = isinstance(self.algorithm, BaseAlgorithm)
        return frame

    # --- reader thread

    def start_reader(self) -> threading.Thread:
        """Start the daemon thread that decodes frames and answers pings."""
        thread = threading.Thread(target=self._read_loop, name="protocol-reader", daemon=True)
        thread.start()
        return thread

    def _read_loop(self) -> None:
        # However this thread ends, the main thread hears of it and never waits forever.
        stop: tuple[str, Any] = ("broken", "protocol reader stopped")
        try:
            stop = self._read_frames()
        except Exception as exc:
            _log.error("protocol reader failed", error_code=PROTOCOL_ERROR, exc_info=exc)
            stop = ("broken", f"protocol reader failed: {_describe(exc)}")
        finally:
            self.events.put(stop)

    def _read_frames(self) -> tuple[str, Any]:
        """Decode and dispatch frames until the stream ends; the (event, detail) that ended it."""
        stream = os.fdopen(self.protocol_in, "rb", buffering=1 << 16, closefd=False)
        while True:
            try:
                message = protocol.read_frame(stream)
            except protocol.FrameTooLarge as exc:
                self.send(
                    protocol.error(
                        None,
                        f"{exc}; the stream cannot be resynchronised, the worker exits",
                        PROTOCOL_ERROR,
                    )
                )
                return "broken", str(exc)
            except protocol.BadFrame as exc:
                self.send(protocol.error(None, str(exc), PROTOCOL_ERROR))
                continue
            except EOFError as exc:
                return "broken", str(exc)
            except (OSError, ValueError) as exc:
                return "eof", f"protocol input failed: {exc}"
            if message is None:
                return "eof", "stdin closed"
            self._last_frame = time.monotonic()
            try:
                self.dispatch(message, time.perf_counter())
            except Exception as exc:  # one frame the adapter mishandles must not stop the reader
                _log.error("adapter failed on a frame", error_code=PROTOCOL_ERROR, exc_info=exc)
                self.send(
                    protocol.error(
                        None, f"frame could not be handled: {_describe(exc)}", PROTOCOL_ERROR
                    )
                )

    def dispatch(self, message: dict[str, Any], received: float) -> None:
        """Handle one decoded frame on the reader thread (pings here, calls to the main thread)."""
        kind = message.get("type")
        if kind is None and "phase" in message:
            kind = "call"
        request_id = message.get("request_id")
        if kind == "ping":
            self.send(protocol.pong(request_id))
        elif kind == "call":
            with self._state_lock:
                refused = self._closing or self._call_pending
                if not refused:
                    self._call_pending = True
            if refused:
                text = "worker is shutting down" if self._closing else BUSY_MESSAGE
                self.send(protocol.error(request_id, text, PROTOCOL_ERROR, busy=True))
            else:
                self.events.put(("call", (message, received)))
        elif kind == "shutdown":
            with self._state_lock:
                self._closing = True
            self.events.put(("shutdown", request_id))
        elif kind == "hello":
            self._apply_hello(message)
        else:
            self.send(protocol.error(request_id, f"unknown message type {kind!r}", PROTOCOL_ERROR))

    def _apply_hello(self, message: dict[str, Any]) -> None:
        """A Runner hello; each one replaces the heartbeat settings (interval 0 = no watchdog)."""
        interval = _as_step(message.get("heartbeat_interval_ms")) or 0
        grace = _as_step(message.get("heartbeat_grace_ms")) or 0
        self.heartbeat_interval_ms = max(0, interval)
        self.heartbeat_grace_ms = max(0, grace)
        _log.debug(
            "runner hello",
            runner_version=message.get("runner_version"),
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            heartbeat_grace_ms=self.heartbeat_grace_ms,
        )
        if self.heartbeat_interval_ms > 0 and self._watchdog is None:
            self._watchdog = threading.Thread(
                target=self._watch_heartbeat, name="heartbeat-watchdog", daemon=True
            )
            self._watchdog.start()

    def heartbeat_limit_s(self) -> float:
        """Silence after which the Runner counts as lost (3 intervals plus the grace)."""
        return (3 * self.heartbeat_interval_ms + self.heartbeat_grace_ms) / 1000.0

    def _watch_heartbeat(self) -> None:
        armed = True
        while True:
            interval_ms = self.heartbeat_interval_ms
            if interval_ms <= 0:
                # A later Runner hello replaces the settings; interval 0 means no watchdog (not
                # a 0 s limit) until a hello with an interval arms it again.
                if armed:
                    armed = False
                    _log.info("heartbeat watchdog disarmed", heartbeat_interval_ms=interval_ms)
                time.sleep(WATCHDOG_IDLE_S)
                continue
            if not armed:
                armed = True
                _log.info("heartbeat watchdog armed", heartbeat_interval_ms=interval_ms)
            time.sleep(min(max(interval_ms / 1000.0, 0.02), 1.0))
            if self.heartbeat_interval_ms <= 0:
                continue  # disarmed while asleep
            limit = self.heartbeat_limit_s()
            silent = time.monotonic() - self._last_frame
            orphaned = os.getppid() != self._parent_pid
            if silent > limit or orphaned:
                reason = "parent process gone" if orphaned else f"no frame for {silent:.1f} s"
                self.events.put(("lost", reason))
                return

    # --- main thread

    def on_signal(self, signum: int, _frame: Any) -> None:
        """SIGTERM/SIGINT: finish the running call, then teardown and exit 0."""
        if not self._signalled:
            self._signalled = True
            self.events.put(("signal", signum))

    def serve(self) -> int:
        """Run calls one at a time until shutdown, EOF, a signal or a broken stream; exit code."""
        while True:
            kind, payload = self.events.get()
            if kind == "call":
                message, received = payload
                try:
                    frame = self.handle_call(message, received)
                except Exception as exc:  # a bug here must not kill the worker silently
                    _log.error("adapter failed on a call", exc_info=exc)
                    frame = protocol.error(
                        message.get("request_id"), f"adapter error: {_describe(exc)}", "9999"
                    )
                with self._state_lock:
                    # cleared before sending, so the Runner's next call is never refused as busy
                    self._call_pending = False
                self._send_result(frame)
                continue
            with self._state_lock:
                self._closing = True
            if kind == "shutdown":
                failure = self.teardown_once()
                ack = protocol.shutdown_ack(payload)
                if failure is not None:
                    ack["message"] = failure.message
                self.send(ack)
                return EXIT_OK
            _log.info("worker stopping", reason=kind, detail=str(payload))
            self.teardown_once()
            return EXIT_STREAM_BROKEN if kind == "broken" else EXIT_OK

    def _send_result(self, frame: dict[str, Any]) -> None:
        if frame.get("type") != "result":
            self.send(frame)  # an error frame: send() has the fallback for what cannot be encoded
            return
        try:
            encoded = protocol.encode_frame(frame)
        except Exception as exc:  # too large, too deep, not JSON: answer, never die here
            reason = _describe(exc)[:_REPR_LIMIT]
        else:
            self._write(encoded)
            return
        data = frame.get("data")
        self.send(
            protocol.result(
                frame.get("request_id"),
                "ERROR",
                f"result cannot be sent: {reason}",
                INVALID_RESULT,
                {k: data.get(k) for k in ("phase", "step_index")} if isinstance(data, dict) else {},
                retryable=False,
                restart_worker=False,
                timings=frame.get("timings"),
            )
        )

    # --- lifecycle hooks

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

    def ensure_setup(self) -> tuple[Outcome | None, float]:
        """Run setup once per process; return (its failure, ms spent now)."""
        if self.setup_done:
            return self.setup_failure, 0.0
        self.setup_done = True
        _, exc, ms = self._run("setup")
        if exc is not None:
            failure = exception_outcome(exc, "setup")
            failure.restart_worker = True
            self.setup_failure = failure
        return self.setup_failure, ms

    def teardown_once(self) -> Outcome | None:
        """Run teardown at most once per process (only if the algorithm was set up or not)."""
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
        request_id = message.get("request_id")
        fields = protocol.call_fields(message)
        phase = fields.get("phase")
        if not isinstance(phase, str) or phase not in _METHODS:  # a list is not even hashable
            text = f"unknown phase {json_safe(phase)!r}"[:_REPR_LIMIT]
            return protocol.error(request_id, text, PROTOCOL_ERROR)
        method_name, required = _METHODS[phase]
        if required and self._method(method_name) is None:
            return protocol.error(
                request_id, f"does not implement {method_name}", ALGORITHM_EXCEPTION
            )
        step_index = _as_step(fields.get("step_index"))
        if phase in ("pre", "execute", "on_step_start", "on_step_finish") and step_index is None:
            return protocol.error(
                request_id,
                f"{phase} needs an integer step_index, got {fields.get('step_index')!r}",
                PROTOCOL_ERROR,
            )
        if self.torn_down:
            return protocol.error(
                request_id, "the worker has been torn down; send shutdown", PROTOCOL_ERROR
            )
        timings: dict[str, float] = {"algorithm_ms": 0.0, "hooks_ms": 0.0}
        entry: SessionEntry | None = None
        if phase == "teardown":
            outcome = self._call_teardown()
        else:
            ran_now = not self.setup_done
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
        return self._result_frame(request_id, phase, step_index, outcome, entry, timings, received)

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
        if step_index in entry.steps:
            return Outcome("OK", data={"ran": False})
        failure = self._start_step(entry, step_index, timings)
        return failure or Outcome("OK", data={"ran": True})

    def _explicit_step_finish(
        self,
        entry: SessionEntry,
        step_index: int,
        fields: dict[str, Any],
        timings: dict[str, float],
    ) -> Outcome:
        if step_index not in entry.steps:
            return Outcome("OK", data={"ran": False})
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
        if step_index not in entry.steps:
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
        if exc is not None:
            outcome = exception_outcome(exc, method)
        else:
            meta = image_meta if isinstance(image_meta, dict) else {}
            max_defects = _as_step(fields.get("max_defects"))
            outcome = evaluate_result(
                raw,
                phase,
                _as_dim(meta.get("width")),
                _as_dim(meta.get("height")),
                DEFAULT_MAX_DEFECTS if max_defects is None else max_defects,
            )
        if phase == "execute" or outcome.status == "ERROR":
            outcome = self._finish_step(entry, step_index, outcome, timings)
        return outcome

    def _take_diagnostics(self) -> dict[str, Any]:
        diagnostics = getattr(self.algorithm, "diagnostics", None)
        getter = getattr(diagnostics, "get", None)
        if not callable(getter):
            return {}
        try:
            items = getter()
            clear = getattr(diagnostics, "clear", None)
            if callable(clear):
                clear()
        except Exception as exc:
            _log.warning("diagnostics could not be collected", error=_describe(exc))
            return {}
        if type(items) is dict and not items:
            return {}  # the common case: nothing published since the last call
        return json_safe(items) if isinstance(items, dict) else {"value": json_safe(items)}

    def _result_frame(
        self,
        request_id: Any,
        phase: str,
        step_index: int | None,
        outcome: Outcome,
        entry: SessionEntry | None,
        timings: dict[str, float],
        received: float,
    ) -> dict[str, Any]:
        data = dict(outcome.data)
        data["phase"] = phase
        data["step_index"] = step_index
        extra: dict[str, Any] = {}
        if outcome.original is not None:
            extra["original"] = outcome.original
        if outcome.problems:
            extra["problems"] = outcome.problems
        if outcome.extra:
            extra["extra"] = outcome.extra
        timings["worker_ms"] = (time.perf_counter() - received) * 1000.0
        return protocol.result(
            request_id,
            outcome.status,
            outcome.message,
            outcome.error_code,
            data,
            debug=outcome.debug,
            diagnostics=self._take_diagnostics(),
            timings={k: round(v, 3) for k, v in timings.items()},
            session_id=entry.session.id if entry is not None else None,
            session_delta=entry.session._take_changes() if entry is not None else None,
            retryable=outcome.retryable,
            restart_worker=outcome.restart_worker,
            **extra,
        )


def prefetch_image(shared_mem_id: str) -> bool:
    """Attach the segment behind `shared_mem_id` so the algorithm's read is a cache hit."""
    try:
        from . import shared_memory

        prefetch = getattr(shared_memory, "prefetch", None)
        if callable(prefetch):
            return bool(prefetch(shared_mem_id))
        # Until shared_memory exposes prefetch(), warm its attach cache the same way a read does.
        from . import segment

        shared_memory._cache.get(segment.segment_name_for_id(shared_mem_id))
        return True
    except Exception:
        # A missing segment is the algorithm's to report when it reads (seed behaviour).
        return False


# ---------------------------------------------------------------------------------------------
# entry point


def _exit_watchdog(code: int) -> None:
    """Leave the process even if threads the algorithm started keep the interpreter alive."""

    def _force() -> None:
        time.sleep(EXIT_GRACE_S)
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(code)

    threading.Thread(target=_force, name="exit-watchdog", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """Run the worker; return its exit code (0 normal, 2 start-up failed, 3 stream broken)."""
    parser = argparse.ArgumentParser(
        prog="python -m procvision_algorithm_sdk.adapter",
        description="Run one algorithm package as a resident worker over the frame protocol.",
    )
    parser.add_argument("--entry", help="module.path:ClassName (overrides discovery)")
    args = parser.parse_args(argv)

    protocol_in, protocol_out = protect_stdio()
    install_logging_bridge()
    logging.captureWarnings(True)

    try:
        entry, source, root = discover_entry(args.entry, os.environ, Path.cwd())
        _log.debug("loading algorithm", entry_point=entry, source=source)
        algorithm = load_algorithm(entry, root)
    except StartupError as exc:
        cause = exc.__cause__ or exc
        _log.error(f"worker start failed: {exc}", error_code=MODEL_NOT_FOUND, exc_info=cause)
        with contextlib.suppress(OSError):
            protocol.write_frame(
                protocol_out, protocol.error(None, f"start failed: {exc}", MODEL_NOT_FOUND)
            )
        return EXIT_START_FAILED

    capacity = DEFAULT_SESSION_CACHE
    with contextlib.suppress(ValueError):
        capacity = int(os.environ.get(SESSION_CACHE_ENV, DEFAULT_SESSION_CACHE))
    worker = Worker(
        algorithm, protocol_in, protocol_out, entry_point=entry, session_capacity=capacity
    )
    signal.signal(signal.SIGTERM, worker.on_signal)
    signal.signal(signal.SIGINT, worker.on_signal)
    if not worker.send(worker.hello()):
        worker.teardown_once()
        return EXIT_OK
    worker.start_reader()
    code = worker.serve()
    _exit_watchdog(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
