"""Example ProcVision algorithm package: locate a PCB, then check its mounting screws."""

from .main import AlgorithmExample

__all__ = ["AlgorithmExample"]
