"""Prometheus metrics of one Runner service: calls, latency split, worker health, shared memory.

One `ServiceMetrics` per app owns its own `CollectorRegistry` (never the global one), so several
apps in one process (tests) never clash. Call counters and latency histograms are fed by the
Runner's call observer; worker and package gauges are read from `Runner.stats()` and
`Runner.packages()` at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

# Milliseconds-scale work reported in seconds (Prometheus convention).
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

CALL_LABELS = ("pid", "name", "version", "phase", "status", "error_code")
LATENCY_LABELS = ("pid", "name", "version", "phase")


def _label(value: object) -> str:
    """Label values are strings; a missing value is the empty string."""
    return "" if value is None else str(value)


def _field(record: object, name: str) -> Any:
    """Read a CallRecord field whether it is a dataclass/namedtuple or a mapping."""
    if isinstance(record, Mapping):
        return record.get(name)
    return getattr(record, name, None)


class _RunnerCollector(Collector):
    """Reads worker and package health from the Runner at scrape time."""

    def __init__(self, runner: Any) -> None:
        self._runner = runner

    def collect(self) -> Iterator[Metric]:
        """Yield gauges and counters built from `Runner.stats()` and `Runner.packages()`."""
        try:
            stats = self._runner.stats() or {}
        except Exception:  # a closing Runner must not break the scrape
            stats = {}
        try:
            packages = list(self._runner.packages())
        except Exception:
            packages = []
        yield from _stats_metrics(stats, packages)


def _number(value: object) -> float:
    """A numeric stat as float (bools and garbage count as 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    return float(value)


def _per_package(stats: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    """The per-package entries of a stats dict (a list or a mapping keyed by "name@version")."""
    entries = stats.get("packages")
    if isinstance(entries, Mapping):
        return [e for e in entries.values() if isinstance(e, Mapping)]
    if isinstance(entries, list):
        return [e for e in entries if isinstance(e, Mapping)]
    return []


def _stats_metrics(stats: Mapping[str, Any], packages: list[dict[str, Any]]) -> Iterator[Metric]:
    restarts = CounterMetricFamily(
        "procvision_worker_restarts", "Worker restarts", labels=["name", "version"]
    )
    timeouts = CounterMetricFamily(
        "procvision_call_timeouts", "Calls that passed their deadline", labels=["name", "version"]
    )
    crash_loops = CounterMetricFamily(
        "procvision_crash_loops", "Crash-loop breaker trips", labels=["name", "version"]
    )
    workers = GaugeMetricFamily(
        "procvision_workers", "Workers by state", labels=["name", "version", "state"]
    )
    per_package = list(_per_package(stats))
    for entry in per_package:
        name, version = _label(entry.get("name")), _label(entry.get("version"))
        restarts.add_metric([name, version], _number(entry.get("restarts")))
        timeouts.add_metric([name, version], _number(entry.get("timeouts")))
        crash_loops.add_metric([name, version], _number(entry.get("crash_loops")))
        states = entry.get("workers")
        if isinstance(states, Mapping):
            for state, count in states.items():
                workers.add_metric([name, version, _label(state)], _number(count))
        elif isinstance(states, list):
            counts: dict[str, int] = {}
            for w in states:
                state = _label(w.get("state") if isinstance(w, Mapping) else w)
                counts[state] = counts.get(state, 0) + 1
            for state, count in counts.items():
                workers.add_metric([name, version, state], count)
    if not per_package:
        # A Runner that only reports totals still gets its numbers exported.
        restarts.add_metric(["", ""], _number(stats.get("restarts")))
        timeouts.add_metric(["", ""], _number(stats.get("timeouts")))
        crash_loops.add_metric(["", ""], _number(stats.get("crash_loops")))
    yield restarts
    yield timeouts
    yield crash_loops
    yield workers

    shm = GaugeMetricFamily(
        "procvision_shared_memory_bytes", "Shared-memory bytes held by image slots"
    )
    shm.add_metric([], _number(stats.get("shm_bytes", stats.get("shared_memory_bytes"))))
    yield shm

    state_gauge = GaugeMetricFamily(
        "procvision_package_state",
        "1 for the current state of each loaded package version",
        labels=["name", "version", "state"],
    )
    for pkg in packages:
        state_gauge.add_metric(
            [_label(pkg.get("name")), _label(pkg.get("version")), _label(pkg.get("state"))], 1.0
        )
    yield state_gauge


class ServiceMetrics:
    """The metrics of one app: a private registry fed by Runner call records and stats."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, runner: Any | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.calls = Counter(
            "procvision_calls",
            "Calls answered, by pid, package version, phase, status and error code",
            CALL_LABELS,
            registry=self.registry,
        )
        self.queue_seconds = Histogram(
            "procvision_call_queue_seconds",
            "Time a call waited for a free worker",
            LATENCY_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.transfer_seconds = Histogram(
            "procvision_call_transfer_seconds",
            "Time spent moving the image into shared memory",
            LATENCY_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.algorithm_seconds = Histogram(
            "procvision_call_algorithm_seconds",
            "Time the algorithm spent on the call",
            LATENCY_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.total_seconds = Histogram(
            "procvision_call_total_seconds",
            "Whole call time as seen by the Runner",
            LATENCY_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.http_requests = Counter(
            "procvision_http_requests",
            "HTTP requests answered, by route template, method and status",
            ("route", "method", "status"),
            registry=self.registry,
        )
        if runner is not None:
            self.registry.register(_RunnerCollector(runner))

    def observe(self, record: object) -> None:
        """Count one answered call (a Runner `CallRecord` or a mapping with its fields)."""
        values = {name: _label(_field(record, name)) for name in CALL_LABELS}
        self.calls.labels(**values).inc()
        latency = {name: values[name] for name in LATENCY_LABELS}
        for field, hist in (
            ("queue_ms", self.queue_seconds),
            ("transfer_ms", self.transfer_seconds),
            ("algorithm_ms", self.algorithm_seconds),
            ("total_ms", self.total_seconds),
        ):
            ms = _field(record, field)
            if isinstance(ms, (int, float)) and not isinstance(ms, bool) and ms >= 0:
                hist.labels(**latency).observe(ms / 1000.0)

    def count_rejected(self, pid: str, phase: str, error_code: str) -> None:
        """Count a call the service answered itself (e.g. an undecodable image)."""
        self.calls.labels(
            pid=pid, name="", version="", phase=phase, status="ERROR", error_code=error_code
        ).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
