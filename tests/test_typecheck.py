"""mypy over the configured files (pyproject's [tool.mypy]), as a test so that CI's two
workers run it beside other test files instead of before them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_finds_no_error() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mypy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert r.returncode == 0, f"{r.stdout[-12000:]}\n{r.stderr[-4000:]}"
    assert "Success: no issues found" in r.stdout, r.stdout
