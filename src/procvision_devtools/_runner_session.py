"""A dev Runner with one project loaded (an execute-only one bound to the `dev` pid).

Here, not in run.py: execute_only.py is imported by run.py, so it cannot import run.py back
(the layering test forbids the cycle); run.py and bench use it too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from procvision_algorithm_sdk.generation import EXECUTE_ONLY

from .call_logs import CallLogs
from .start_failure import check_started

DEV_PID = "dev"  # the pid a dev run binds an execute-only package to (it has none of its own)


def runner_config(**overrides: Any) -> Any:
    """Return a RunnerConfig for a developer machine: one worker, no synthetic warm-up."""
    from procvision_runner.config import RunnerConfig

    settings: dict[str, Any] = {"workers_per_package": 1, "warmup_calls": 0}
    settings.update(overrides)
    return RunnerConfig(**settings)


@contextlib.contextmanager
def open_runner(
    project: Path, logs: CallLogs | None = None, **config: Any
) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Start a Runner with the project loaded; yield it and the algorithm's get_info().

    With `logs` (capturing), a package whose worker did not start raises StartFailed with
    the worker's start-up records instead of answering every call with the failure.
    """
    from procvision_runner import Runner

    with Runner(runner_config(**config)) as runner:
        key = runner.load(project.resolve())
        if logs is not None:
            check_started(runner, key, logs)
        info = runner.package_info(key)
        if info.get("api") == EXECUTE_ONLY:
            runner.route([DEV_PID], key)  # it has no pids of its own: bind the dev pid
        yield runner, info
