"""The Runner suites' fixtures: Runners with the fast test config, checked clean after use.

`make_runner(**config)` makes Runners for one test; `module_runner(**config)` makes Runners a
whole module shares (for tests that leave nothing in the Runner: a worker start costs a
process). Both close what they made and check that no worker and no segment is left.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers.runner_kit import Tracked, alive, our_segments, runner_config

from procvision_runner import Runner


def _runners() -> Iterator[Callable[..., Tracked]]:
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


@pytest.fixture
def make_runner() -> Iterator[Callable[..., Tracked]]:
    """Runners with the fast test config; after the test: closed, no worker, no segment left."""
    yield from _runners()


@pytest.fixture(scope="module")
def module_runner() -> Iterator[Callable[..., Tracked]]:
    """Like `make_runner`, for Runners a module shares; checked clean after the module."""
    yield from _runners()
