"""`procvision-cli`, the Dev Runner: validate, run, init, package, bench.

`validate()` and `run()` are the seed's Python API; `init_project()`, `run_adapter()` and
`validate_adapter()` the original SDK's helpers. None raises on bad input.
"""

from __future__ import annotations

from .main import main
from .run import run
from .seed_api import init_project, run_adapter, validate_adapter
from .validate import validate

__all__ = ["init_project", "main", "run", "run_adapter", "validate", "validate_adapter"]
