"""Fixtures shared by every suite.

This directory is on sys.path (pytest puts a rootdir conftest's directory there; the insert
below makes it explicit), so the suites import `helpers.*` and the algorithm packages
`algos.*` (`algos/adapter`, `algos/cli`; `algos/runner` holds package folders) by name, and no
test module imports another.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
# the helpers assert too: rewrite their asserts like a test module's, for readable failures
pytest.register_assert_rewrite("helpers")

from helpers.openapi_check import CHECKER, install_httpx_hook  # noqa: E402
from helpers.package_zips import EXAMPLE  # noqa: E402

if TYPE_CHECKING:
    from helpers.station import Stations

install_httpx_hook()


def _fail_on_undocumented_responses(phase: str) -> None:
    problems = CHECKER.take()
    if problems:
        listed = "\n  ".join(problems)
        raise AssertionError(
            f"{len(problems)} response(s) in {phase} do not match the service's OpenAPI "
            f"document:\n  {listed}"
        )


# Every Runner response a test phase received is checked against the OpenAPI document
# (helpers/openapi_check.py); a mismatch fails the phase that received it.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    yield
    _fail_on_undocumented_responses("setup")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    yield
    _fail_on_undocumented_responses("the test")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    yield
    _fail_on_undocumented_responses("teardown")


@pytest.fixture(scope="session")
def example_frame() -> np.ndarray:
    """The example's ok_01.png as an RGB array (read-only: copy it before changing it)."""
    with Image.open(EXAMPLE / "images" / "ok_01.png") as img:
        frame = np.asarray(img.convert("RGB"))
    frame.setflags(write=False)
    return frame


def shared_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A directory every process of this pytest run shares (the xdist workers' common parent).

    Anything built there must be built under a file lock and only read afterwards.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # each worker's basetemp is <the run's basetemp>/popen-gwN
        return tmp_path_factory.getbasetemp().parent / name
    return tmp_path_factory.getbasetemp() / name


@pytest.fixture(scope="session")
def stations(tmp_path_factory: pytest.TempPathFactory) -> Stations:
    """The example's zips and template stores (helpers/station.py), built once per run.

    Tests copy a template (`stations.copy`) and never change the shared files. An xdist worker
    that finds another building a template builds its own in its basetemp instead of waiting.
    """
    from helpers.station import Stations  # imports the Runner: only for the tests that use it

    own = tmp_path_factory.getbasetemp() / "own-stations"
    private = own if os.environ.get("PYTEST_XDIST_WORKER") else None
    return Stations(shared_dir(tmp_path_factory, "stations"), private=private)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put slow files first: slow as a whole, then holding a slow test (a stable sort).

    `--dist loadfile` hands out whole files in collection order as workers get free, so a long
    file collected last would run alone at the end while the other core idles; the short files
    fill in at the end instead. The longest files are marked slow as a whole (`pytestmark`).
    Tests keep their order within a file, and `--random-order` (a later hook) still shuffles.
    """
    whole: set[str] = set()
    some: set[str] = set()
    for item in items:
        path = item.nodeid.split("::")[0]
        module = item.getparent(pytest.Module)
        if module is not None and any(m.name == "slow" for m in module.own_markers):
            whole.add(path)
        if item.get_closest_marker("slow"):
            some.add(path)

    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        return 0 if path in whole else 1 if path in some else 2

    items.sort(key=rank)
