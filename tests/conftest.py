"""Fixtures shared by every suite.

This directory is on sys.path (pytest puts a rootdir conftest's directory there; the insert
below makes it explicit), so the suites import `helpers.*` and the algorithm packages
`adapter_algos`, `cli_algos` and `runner_algos` by name, and no test module imports another.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
# the helpers assert too: rewrite their asserts like a test module's, for readable failures
pytest.register_assert_rewrite("helpers")

from helpers.package_zips import EXAMPLE  # noqa: E402


@pytest.fixture(scope="session")
def example_frame() -> np.ndarray:
    """The example's ok_01.png as an RGB array (read-only: copy it before changing it)."""
    with Image.open(EXAMPLE / "images" / "ok_01.png") as img:
        frame = np.asarray(img.convert("RGB"))
    frame.setflags(write=False)
    return frame
