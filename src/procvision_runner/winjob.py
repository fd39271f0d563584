"""Windows: a job object with JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE holding every worker.

Closing the job's last handle (the Runner exits or dies) terminates every process in it,
including what the workers started (children join their parent's job). UNTESTED: written for
Windows, never run here (the CI and the station lines are Linux).
"""

from __future__ import annotations

import ctypes
from typing import Any

__all__ = ["JobObject"]

_JOB_OBJECT_EXTENDED_LIMIT_INFORMATION = 9
_JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x2000


class _BasicLimits(ctypes.Structure):
    _fields_ = [
        ("PerProcessUserTimeLimit", ctypes.c_int64),
        ("PerJobUserTimeLimit", ctypes.c_int64),
        ("LimitFlags", ctypes.c_uint32),
        ("MinimumWorkingSetSize", ctypes.c_size_t),
        ("MaximumWorkingSetSize", ctypes.c_size_t),
        ("ActiveProcessLimit", ctypes.c_uint32),
        ("Affinity", ctypes.c_size_t),
        ("PriorityClass", ctypes.c_uint32),
        ("SchedulingClass", ctypes.c_uint32),
    ]


class _IoCounters(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in ("r", "w", "o", "rb", "wb", "ob")]


class _ExtendedLimits(ctypes.Structure):
    _fields_ = [
        ("BasicLimitInformation", _BasicLimits),
        ("IoInfo", _IoCounters),
        ("ProcessMemoryLimit", ctypes.c_size_t),
        ("JobMemoryLimit", ctypes.c_size_t),
        ("PeakProcessMemoryUsed", ctypes.c_size_t),
        ("PeakJobMemoryUsed", ctypes.c_size_t),
    ]


class JobObject:  # pragma: no cover - Windows only, untested
    """A kill-on-close job; `assign` puts a Popen'd process in it."""

    def __init__(self, handle: Any, kernel32: Any) -> None:
        self._handle = handle
        self._kernel32 = kernel32

    @classmethod
    def create(cls) -> JobObject | None:
        """Create the job, or None when the API is unavailable."""
        loader = getattr(ctypes, "WinDLL", None)
        if loader is None:
            return None
        kernel32 = loader("kernel32", use_last_error=True)
        handle = kernel32.CreateJobObjectW(None, None)
        if not handle:
            return None
        info = _ExtendedLimits()
        info.BasicLimitInformation.LimitFlags = _JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
        ok = kernel32.SetInformationJobObject(
            handle,
            _JOB_OBJECT_EXTENDED_LIMIT_INFORMATION,
            ctypes.byref(info),
            ctypes.sizeof(info),
        )
        if not ok:
            kernel32.CloseHandle(handle)
            return None
        return cls(handle, kernel32)

    def assign(self, process: Any) -> bool:
        """Put `process` (a subprocess.Popen) in the job."""
        handle = getattr(process, "_handle", None)
        return bool(handle and self._kernel32.AssignProcessToJobObject(self._handle, int(handle)))

    def close(self) -> None:
        """Close the job: every process still in it is terminated."""
        if self._handle:
            self._kernel32.CloseHandle(self._handle)
            self._handle = None
