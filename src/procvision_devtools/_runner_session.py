"""A Runner with one execute-only project loaded (the `dev` pid bound), for execute_only.py.

run.py keeps its own open_runner: execute_only.py is imported by run.py, so it cannot import
run.py back (the layering test forbids the cycle).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from procvision_algorithm_sdk.generation import EXECUTE_ONLY

DEV_PID = "dev"  # the pid a dev run binds an execute-only package to (it has none of its own)


def runner_config(**overrides: Any) -> Any:
    """Return a RunnerConfig for a developer machine: one worker, no synthetic warm-up."""
    from procvision_runner.config import RunnerConfig

    settings: dict[str, Any] = {"workers_per_package": 1, "warmup_calls": 0}
    settings.update(overrides)
    return RunnerConfig(**settings)


@contextlib.contextmanager
def open_runner(project: Path, **config: Any) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Start a Runner with the project loaded; yield it and the algorithm's get_info()."""
    from procvision_runner import Runner

    with Runner(runner_config(**config)) as runner:
        key = runner.load(project.resolve())
        info = runner.package_info(key)
        if info.get("api") == EXECUTE_ONLY:
            runner.route([DEV_PID], key)  # it has no pids of its own: bind the dev pid
        yield runner, info
