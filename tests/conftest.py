"""Fixtures shared by every suite.

This directory is on sys.path (pytest puts a rootdir conftest's directory there; the insert
below makes it explicit), so the suites import `helpers.*` and the algorithm packages
`algos.*` (`algos/adapter`, `algos/cli`; `algos/runner` holds package folders) by name, and no
test module imports another.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from pathlib import Path

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


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the files that hold a slow test first (a stable sort: otherwise in collected order).

    `--dist loadfile` hands out whole files in collection order as workers get free, so a long
    file collected last would run alone at the end while the other core idles; the short files
    fill in at the end instead. Tests keep their order within a file, and `--random-order` (a
    later hook) still shuffles.
    """
    has_slow = {i.nodeid.split("::")[0] for i in items if i.get_closest_marker("slow")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in has_slow)
