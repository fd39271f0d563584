"""RunnerConfig: every timing and size the Runner uses (contract section 7 defaults)."""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procvision_algorithm_sdk.errors import INVALID_PARAMS

from .errors import RunnerError


class ConfigFileError(ValueError):
    """A config file that cannot be read or parsed (reported with code 1006)."""

    error_code = INVALID_PARAMS


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse one JSON or TOML (by suffix) config document into a dict; ConfigFileError if not."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"cannot read config {p}: {exc}") from exc
    try:
        if p.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef,unused-ignore]
            doc: Any = tomllib.loads(text)
        else:
            doc = json.loads(text)
    except ValueError as exc:  # json and toml decode errors are ValueErrors
        raise ConfigFileError(f"config {p} does not parse: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigFileError(f"config {p} must be an object/table")
    return doc


@dataclass
class RunnerConfig:
    """Runner settings; all times in milliseconds unless the name says otherwise."""

    pre_execute_timeout_ms: int = 10000
    execute_timeout_ms: int = 30000
    startup_timeout_ms: int = 60000  # spawn to hello, and the info call
    setup_timeout_ms: int = 60000
    hook_timeout_ms: int = 10000  # reset, on_step_start, on_step_finish, teardown
    heartbeat_interval_ms: int = 5000
    heartbeat_grace_ms: int = 2000
    max_retries: int = 2  # advertised to callers; the Runner itself never re-runs a call
    max_defects: int = 20
    step_frame: bool = True  # run_step as one `step` call frame when the worker offers it
    workers_per_package: int = 1
    queue_size: int = 32  # callers allowed to wait for a worker of one package
    queue_timeout_ms: int = 10000
    kill_grace_ms: int = 2000  # SIGTERM to SIGKILL
    shutdown_timeout_ms: int = 5000  # shutdown frame to exit, before SIGTERM
    restart_backoff_initial_ms: int = 200
    restart_backoff_max_ms: int = 30000
    crash_loop_failures: int = 5
    crash_loop_window_s: float = 60.0
    crash_loop_cooldown_s: float = 30.0  # breaker open -> one trial worker (half-open)
    max_worker_rss_mb: int = 0  # a worker above it after a call is recycled (0: no bound)
    worker_memory_limit_mb: int = 0  # a worker above it is killed, its call 1004 (0: none)
    # per package name: {"max_worker_rss_mb": N, "worker_memory_limit_mb": N} over the above
    package_limits: dict[str, dict[str, int]] = field(default_factory=dict)
    # containment: where the Runner records its workers' process groups for the next start
    # (None: no state file; serve uses <store>/run), and whether to use a writable cgroup v2
    state_dir: str | None = None
    worker_cgroups: bool = True
    warmup_calls: int = 1  # synthetic pre+execute runs per step after setup
    warmup_shape: tuple[int, ...] = (1200, 1920, 3)
    slots_per_worker: int = 2
    slot_initial_bytes: int = 0
    session_ttl_s: float = 3600.0
    session_log_lines: int = 500
    stderr_tail_lines: int = 40
    log_level: str = "info"  # PROC_LOG_LEVEL for the workers
    extra_env: dict[str, str] = field(default_factory=dict)  # explicit variables for workers

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise RunnerError("invalid runner config: " + "; ".join(problems), INVALID_PARAMS)

    def problems(self) -> list[str]:
        """Return what is wrong with these settings (empty when usable)."""
        out: list[str] = []
        positive = (
            "pre_execute_timeout_ms",
            "execute_timeout_ms",
            "startup_timeout_ms",
            "setup_timeout_ms",
            "hook_timeout_ms",
            "heartbeat_interval_ms",
            "heartbeat_grace_ms",
            "workers_per_package",
            "kill_grace_ms",
            "shutdown_timeout_ms",
            "crash_loop_failures",
            "slots_per_worker",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                out.append(f"{name} must be a positive integer, not {value!r}")
        for name in ("crash_loop_window_s", "crash_loop_cooldown_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                out.append(f"{name} must be a positive number, not {value!r}")
        out.extend(self._limit_problems())
        for name in ("queue_size", "warmup_calls", "max_defects", "slot_initial_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                out.append(f"{name} must be a non-negative integer, not {value!r}")
        if not isinstance(self.extra_env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.extra_env.items()
        ):
            out.append("extra_env must map str to str")
        shape = tuple(self.warmup_shape)
        if len(shape) not in (2, 3) or not all(isinstance(n, int) and n > 0 for n in shape):
            out.append(f"warmup_shape must be (H, W) or (H, W, 3), not {self.warmup_shape!r}")
        self.warmup_shape = shape
        return out

    def _limit_problems(self) -> list[str]:
        out: list[str] = []
        keys = ("max_worker_rss_mb", "worker_memory_limit_mb")
        checks = [(name, getattr(self, name)) for name in keys]
        if not isinstance(self.package_limits, dict):
            return [
                f"package_limits must be a table of package tables, not {self.package_limits!r}"
            ]
        for package, table in self.package_limits.items():
            if not isinstance(table, dict) or set(table) - set(keys):
                out.append(f"package_limits.{package} may only set {', '.join(keys)}")
                continue
            checks.extend((f"package_limits.{package}.{k}", v) for k, v in table.items())
        for name, value in checks:
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                out.append(f"{name} must be a non-negative integer (MB), not {value!r}")
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunnerConfig:
        """Build a config from a mapping; unknown keys are an error (typos must not pass)."""
        problem = unknown_keys_message("runner config", values, _field_names(cls))
        if problem:
            raise RunnerError(problem, INVALID_PARAMS)
        kwargs = dict(values)
        if "warmup_shape" in kwargs:
            kwargs["warmup_shape"] = tuple(kwargs["warmup_shape"])
        return cls(**kwargs)

    @classmethod
    def from_file(cls, path: str | Path) -> RunnerConfig:
        """Load a config from a JSON or TOML file (a `[runner]` table is used when present)."""
        values = read_config_file(path)
        runner = values.get("runner")
        return cls.from_dict(runner if isinstance(runner, dict) else values)

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as plain JSON-able values."""
        out = dataclasses.asdict(self)
        out["warmup_shape"] = list(self.warmup_shape)
        return out


# ---------------------------------------------------------------------------------------------
# the config file: one reader, three tables

CONFIG_TABLES = ("runner", "store", "service")


def _field_names(cls: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def unknown_keys_message(
    where: str, given: Iterable[str], known: Iterable[str], kind: str = "key"
) -> str | None:
    """Name each unknown key of `where` with the closest known one; None when all are known."""
    names = sorted(known)
    unknown = sorted(set(given) - set(names))
    if not unknown:
        return None
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
        parts.append(repr(key) + (f" (did you mean {close[0]!r}?)" if close else ""))
    noun = kind if len(unknown) == 1 else f"{kind}s"
    return f"unknown {where} {noun}: {', '.join(parts)}"


@dataclass(frozen=True)
class ConfigDocument:
    """One config file, read once: its `runner`, `store` and `service` tables (None if absent)."""

    path: Path | None = None
    runner: dict[str, Any] | None = None
    store: dict[str, Any] | None = None
    service: dict[str, Any] | None = None

    def runner_config(self) -> RunnerConfig | None:
        """The `runner` table as a RunnerConfig; None when the file has no such table."""
        return None if self.runner is None else RunnerConfig.from_dict(self.runner)


def load_config(path: str | Path | None) -> ConfigDocument:
    """Read a JSON or TOML config file once and check its tables (ConfigFileError, 1006).

    Settings live in the `runner`, `store` and `service` tables: a setting outside them, or a
    table of another name, is refused with its name and the closest known one. Each table's
    keys are checked by its own parser (RunnerConfig, StoreConfig, ServiceConfig), the same
    way. A relative `store.trusted_keys_dir` is taken relative to the file.
    """
    if path is None:
        return ConfigDocument()
    p = Path(path)
    doc = read_config_file(p)
    loose = sorted(k for k, v in doc.items() if not isinstance(v, dict))
    if loose:
        raise ConfigFileError(
            f"config {p}: settings belong in [runner], [store] or [service], not {loose}"
        )
    problem = unknown_keys_message("config", doc, CONFIG_TABLES, kind="table")
    if problem:
        raise ConfigFileError(f"config {p}: {problem}")
    store = doc.get("store")
    if store is not None:
        store = dict(store)
        keys = store.get("trusted_keys_dir")
        if isinstance(keys, str) and not Path(keys).is_absolute():
            store["trusted_keys_dir"] = str((p.parent / keys).resolve())
    return ConfigDocument(p, doc.get("runner"), store, doc.get("service"))
