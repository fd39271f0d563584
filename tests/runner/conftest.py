"""The Runner suites' fixture: `make_runner(**config)` makes Runners that are checked clean."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers.runner_kit import Tracked, alive, our_segments, runner_config

from procvision_runner import Runner


@pytest.fixture
def make_runner() -> Iterator[Callable[..., Tracked]]:
    """Runners with the fast test config; after the test: closed, no worker, no segment left."""
    made: list[Tracked] = []
    before = our_segments()

    def make(**overrides: Any) -> Tracked:
        tracked = Tracked(Runner(runner_config(**overrides)))
        made.append(tracked)
        return tracked

    yield make
    for tracked in made:
        tracked.worker_pids()
        tracked.runner.close()
        stray = [p for p in tracked.pids if alive(p)]
        assert not stray, f"worker processes left after close(): {stray}"
    assert our_segments() - before == set(), "shared-memory segments left after close()"
