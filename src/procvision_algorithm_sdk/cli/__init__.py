"""Compatibility shim: the Dev Runner CLI now lives in `procvision_devtools`.

`procvision_algorithm_sdk.cli.validate`, `.run` and `.main` (the seed's Python API) keep working
wherever the developer tools are installed; they are imported on first use, so importing the SDK
never imports the station side. Without the developer tools the access raises an ImportError
that names the install that brings them. This is the one import edge from the SDK to the
developer tools (held by tests/test_layering.py).
"""

from __future__ import annotations

import importlib
from typing import Any

DEVTOOLS_INSTALL = "pip install procvision-runner"

# Names forwarded to procvision_devtools (the seed API and the seed helpers built on it).
_FORWARDED = ("main", "run", "validate", "init_project", "run_adapter", "validate_adapter")

__all__ = ["init_project", "main", "run", "run_adapter", "validate", "validate_adapter"]


def __getattr__(name: str) -> Any:
    """Forward the seed CLI API to procvision_devtools on first access."""
    if name not in _FORWARDED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        devtools = importlib.import_module("procvision_devtools")
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] not in ("procvision_devtools",):
            raise
        raise ModuleNotFoundError(
            f"procvision_algorithm_sdk.cli.{name} needs the ProcVision developer tools, "
            f"which the SDK alone does not include: {DEVTOOLS_INSTALL}",
            name="procvision_devtools",
        ) from exc
    try:
        value = getattr(devtools, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value
