"""The distribution version, read by pyproject and reported in hello frames."""

__version__ = "1.0.0"
