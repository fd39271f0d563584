"""Prometheus metrics of one Runner service: calls, latency split, worker health, shared memory.

One `ServiceMetrics` per app owns its own `CollectorRegistry` (never the global one), so several
apps in one process (tests) never clash. Call counters and latency histograms are fed by the
Runner's call observer; worker and package gauges are read from `Runner.stats()` at scrape
time.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator, Mapping
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from procvision_algorithm_sdk._version import __version__
from procvision_algorithm_sdk.errors import ERROR_CODES

# Counters' `_created` twins double every series and no dashboard of ours reads them.
prometheus_client.disable_created_metrics()

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
VERDICT_LABELS = ("pid", "name", "version", "step", "result_status")
LATENCY_LABELS = ("pid", "name", "version", "phase")


def _label(value: object) -> str:
    """Label values are strings; a missing value is the empty string."""
    return "" if value is None else str(value)


# Label values must come from small fixed sets: every new value is a new series kept forever.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"


def error_code_label(code: object) -> str:
    """A contract error code as itself, any other (algorithm-made) code as "other"."""
    if code is None or code == "":
        return ""
    return str(code) if str(code) in ERROR_CODES else OTHER


def method_label(method: str) -> str:
    """A standard HTTP method as itself, anything a client invented as "other"."""
    return method if method in HTTP_METHODS else OTHER


def _field(record: object, name: str) -> Any:
    """Read a CallRecord field whether it is a dataclass/namedtuple or a mapping."""
    if isinstance(record, Mapping):
        return record.get(name)
    return getattr(record, name, None)


class _Fixed(Collector):
    """Metrics whose values never change (build info)."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        """Yield the fixed metrics."""
        yield from self._metrics


class _RunnerCollector(Collector):
    """Reads worker and package health from the Runner at scrape time."""

    def __init__(self, runner: Any) -> None:
        self._runner = runner

    def collect(self) -> Iterator[Metric]:
        """Yield gauges and counters built from `Runner.stats()`."""
        try:
            stats = self._runner.stats() or {}
        except Exception:  # a closing Runner must not break the scrape
            stats = {}
        packages = stats.get("packages")
        if not isinstance(packages, list):
            packages = []
        yield from _stats_metrics(stats, [p for p in packages if isinstance(p, Mapping)])


def _number(value: object) -> float:
    """A numeric stat as float (bools and garbage count as 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    return float(value)


# Runner-wide event counters of Runner.stats(): (stat key, metric name, help).
_EVENT_COUNTERS = (
    ("restarts", "procvision_worker_restarts", "Workers restarted after a crash or a kill"),
    ("timeouts", "procvision_call_timeouts", "Calls that passed their deadline"),
    ("crashes", "procvision_worker_crashes", "Workers that died unexpectedly"),
    ("heartbeat_losses", "procvision_heartbeat_losses", "Workers that stopped answering pings"),
    ("crash_loops", "procvision_crash_loops", "Packages marked FAILED by the crash-loop breaker"),
    ("breaker_trials", "procvision_breaker_trials", "Trial workers started by an open breaker"),
    ("memory_recycles", "procvision_memory_recycles", "Workers replaced above max_worker_rss_mb"),
    ("memory_kills", "procvision_memory_kills", "Workers killed above worker_memory_limit_mb"),
    ("busy_rejections", "procvision_busy_rejections", "Calls refused because a queue was full"),
)


def _stats_metrics(stats: Mapping[str, Any], packages: list[Mapping[str, Any]]) -> Iterator[Metric]:
    for key, name, doc in _EVENT_COUNTERS:
        counter = CounterMetricFamily(name, doc)
        counter.add_metric([], _number(stats.get(key)))
        yield counter

    workers = GaugeMetricFamily(
        "procvision_workers",
        "Workers by package version and state",
        labels=["name", "version", "state"],
    )
    queued = GaugeMetricFamily(
        "procvision_queued_calls", "Calls waiting for a worker", labels=["name", "version"]
    )
    state_gauge = GaugeMetricFamily(
        "procvision_package_state",
        "1 for the current state of each loaded package version",
        labels=["name", "version", "state"],
    )
    transport = GaugeMetricFamily(
        "procvision_package_transport",
        "1 for how each loaded package version gets its frames (shared_memory, or files for a "
        "package that kept the original SDK)",
        labels=["name", "version", "transport"],
    )
    for pkg in packages:
        name, version = _label(pkg.get("name")), _label(pkg.get("version"))
        state_gauge.add_metric([name, version, _label(pkg.get("state"))], 1.0)
        kind = pkg.get("transport")
        transport.add_metric([name, version, "files" if kind == "files" else "shared_memory"], 1.0)
        queued.add_metric([name, version], _number(pkg.get("queued")))
        counts: dict[str, int] = {}
        for worker in pkg.get("workers") or []:
            state = _label(worker.get("state") if isinstance(worker, Mapping) else worker)
            counts[state] = counts.get(state, 0) + 1
        for state, count in sorted(counts.items()):
            workers.add_metric([name, version, state], count)
    yield workers
    yield queued
    yield state_gauge
    yield transport

    yield from _worker_process_metrics(stats)

    shm = GaugeMetricFamily(
        "procvision_shared_memory_bytes", "Shared-memory bytes held by image slots"
    )
    shm.add_metric([], _number(stats.get("shm_bytes_in_use")))
    yield shm
    sessions = GaugeMetricFamily("procvision_sessions", "Sessions the Runner keeps state for")
    sessions.add_metric([], _number(stats.get("sessions")))
    yield sessions


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def read_process(pid: int) -> tuple[float, int, int] | None:
    """(CPU seconds, resident bytes, open fds) of a live process from /proc; None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        with open(f"/proc/{pid}/statm", "rb") as fh:
            resident_pages = int(fh.read().split()[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, IndexError, ValueError):
        return None
    # fields[0] is the state (field 3 of stat); utime and stime are fields 14 and 15
    cpu = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return cpu, resident_pages * _PAGE_SIZE, fds


def _worker_process_metrics(stats: Mapping[str, Any]) -> Iterator[Metric]:
    labels = ["name", "version", "worker"]
    cpu = CounterMetricFamily(
        "procvision_worker_cpu_seconds", "CPU time of each worker process", labels=labels
    )
    rss = GaugeMetricFamily(
        "procvision_worker_resident_memory_bytes", "Resident memory of each worker", labels=labels
    )
    fds = GaugeMetricFamily(
        "procvision_worker_open_fds", "Open file descriptors of each worker", labels=labels
    )
    workers = stats.get("workers")
    for worker in workers if isinstance(workers, list) else []:
        pid = worker.get("pid") if isinstance(worker, Mapping) else None
        if not isinstance(pid, int) or isinstance(pid, bool):
            continue
        reading = read_process(pid)
        if reading is None:
            continue
        values = [
            _label(worker.get("package")),
            _label(worker.get("version")),
            _label(worker.get("id")),
        ]
        cpu.add_metric(values, reading[0])
        rss.add_metric(values, float(reading[1]))
        fds.add_metric(values, float(reading[2]))
    yield cpu
    yield rss
    yield fds


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
        self.verdicts = Counter(
            "procvision_verdicts",
            "Execute verdicts (data.result_status), by pid, package version and step",
            VERDICT_LABELS,
            registry=self.registry,
        )
        build = GaugeMetricFamily(
            "procvision_build_info",
            "The Runner's version and Python (always 1)",
            labels=["version", "python"],
        )
        build.add_metric([__version__, platform.python_version()], 1.0)
        self.registry.register(_Fixed([build]))
        ProcessCollector(registry=self.registry)  # the Runner's own CPU, RSS and open fds
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
        if not values["name"]:
            values["pid"] = ""  # no package routed: the pid is whatever the client sent
        values["error_code"] = error_code_label(values["error_code"])
        self.calls.labels(**values).inc()
        verdict = _field(record, "result_status")
        if values["phase"] == "execute" and values["status"] == "OK" and verdict in ("OK", "NG"):
            self.verdicts.labels(
                pid=values["pid"],
                name=values["name"],
                version=values["version"],
                step=_label(_field(record, "step_index")),
                result_status=verdict,
            ).inc()
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

    def count_rejected(
        self, pid: str, phase: str, error_code: str, package: Mapping[str, Any] | None = None
    ) -> None:
        """Count a call the service answered itself (e.g. an undecodable image)."""
        self.observe(
            {
                "pid": pid,
                "name": package.get("name") if package else None,
                "version": package.get("version") if package else None,
                "phase": phase,
                "status": "ERROR",
                "error_code": error_code,
            }
        )

    def count_request(self, route: str, method: str, status: int) -> None:
        """Count one answered HTTP request."""
        self.http_requests.labels(
            route=route, method=method_label(method), status=str(status)
        ).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
