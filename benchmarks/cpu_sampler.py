"""A pytest plugin that adds up the CPU of every process below pytest (`-p cpu_sampler`).

`/usr/bin/time` counts only children that were waited for, and a Ray node's processes die
unreaped by their parent at shutdown, so their CPU goes missing there. This plugin reads
/proc every 0.25 s, keeps the largest CPU time seen per descendant pid, and prints
`CPUSAMPLE own=... descendants=... total=...` (seconds) at the end of the session. A process
that lives less than one sampling period is missed. Run with benchmarks/ on PYTHONPATH:
`PYTHONPATH=benchmarks pytest -p cpu_sampler tests/ray/test_ray_cluster.py`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from procvision_runner.proctable import descendants

_SEEN: dict[int, float] = {}
_STOP = threading.Event()
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the name may hold spaces: count after ')'
    return (int(fields[11]) + int(fields[12])) / _TICK


def _sample() -> None:
    while not _STOP.is_set():
        for proc in descendants(os.getpid()):
            cpu = _cpu_s(proc.pid)
            if cpu is not None:
                _SEEN[proc.pid] = max(_SEEN.get(proc.pid, 0.0), cpu)
        _STOP.wait(0.25)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Start sampling."""
    threading.Thread(target=_sample, daemon=True).start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop sampling and print the totals."""
    _STOP.set()
    times = os.times()
    own = times.user + times.system
    below = sum(_SEEN.values())
    load = Path("/proc/loadavg").read_text().split()[0]
    print(f"\nCPUSAMPLE own={own:.1f} descendants={below:.1f} total={own + below:.1f} load={load}")
