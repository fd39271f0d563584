"""ProcVision Runner: the station-side host of algorithm packages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import RunnerConfig
from .errors import RunnerError

if TYPE_CHECKING:
    from .calls import PackageKey
    from .results import CallRecord
    from .runner import Runner

__all__ = ["CallRecord", "PackageKey", "Runner", "RunnerConfig", "RunnerError"]


def __getattr__(name: str) -> Any:
    """Load the Runner's names on first access (PEP 562).

    The Runner pulls in numpy, the pool and the workers; the command lines import submodules of
    this package (the store, the stdout helpers) and must not pay for it.
    """
    if name not in ("CallRecord", "PackageKey", "Runner"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import runner

    value = getattr(runner, name)
    globals()[name] = value
    return value
