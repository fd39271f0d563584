"""`procvision-cli`, the Dev Runner: validate, run, init, package, bench.

`validate()` and `run()` are the seed's Python API; neither raises on bad input.
"""

from __future__ import annotations

from .main import main
from .run import run
from .validate import validate

__all__ = ["main", "run", "validate"]
