"""ProcVision Runner: the station-side host of algorithm packages."""

from .config import RunnerConfig
from .runner import CallRecord, PackageKey, Runner, RunnerError

__all__ = ["CallRecord", "PackageKey", "Runner", "RunnerConfig", "RunnerError"]
