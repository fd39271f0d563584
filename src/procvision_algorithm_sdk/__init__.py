"""ProcVision algorithm SDK: the API algorithm packages are written against."""

from ._version import __version__ as __version__
from .base import BaseAlgorithm
from .diagnostics import Diagnostics
from .errors import FatalError, GPUOutOfMemoryError, ProgramError, RecoverableError
from .logger import StructuredLogger
from .session import Session
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
