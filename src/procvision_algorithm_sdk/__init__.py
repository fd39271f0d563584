"""ProcVision algorithm SDK: the API algorithm packages are written against."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__
from .base import BaseAlgorithm
from .diagnostics import Diagnostics
from .errors import FatalError, GPUOutOfMemoryError, ProgramError, RecoverableError
from .logger import StructuredLogger
from .session import Session

if TYPE_CHECKING:
    from .shared_memory import read_image_from_shared_memory, write_image_array_to_shared_memory

__all__ = [
    "BaseAlgorithm",
    "Diagnostics",
    "FatalError",
    "GPUOutOfMemoryError",
    "ProgramError",
    "RecoverableError",
    "Session",
    "StructuredLogger",
    "read_image_from_shared_memory",
    "write_image_array_to_shared_memory",
]

# The shared-memory helpers pull in numpy (~0.2 s); loaded on first use (PEP 562) so that the
# command lines, which import this package for its error codes and version, start light.
_SHARED_MEMORY = ("read_image_from_shared_memory", "write_image_array_to_shared_memory")


def __getattr__(name: str) -> Any:
    """Load the numpy-backed shared-memory helpers on first access."""
    if name not in _SHARED_MEMORY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import shared_memory

    value = getattr(shared_memory, name)
    globals()[name] = value
    return value
