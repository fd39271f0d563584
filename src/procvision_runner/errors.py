"""The Runner's exceptions; both derive from the SDK's ProcVisionError and carry an error code."""

from __future__ import annotations

from procvision_algorithm_sdk.errors import INVALID_PARAMS, TIMEOUT, ProcVisionError

__all__ = ["RunnerError", "WorkerStartError"]


class RunnerError(ProcVisionError):
    """Misuse of the Runner's management API (load, route, unload); carries a code."""

    def __init__(self, message: str, error_code: str = INVALID_PARAMS) -> None:
        super().__init__(message, error_code=error_code)


class WorkerStartError(ProcVisionError):
    """A worker failed to start (spawn, hello, protocol version, setup); carries the code."""

    def __init__(self, message: str, error_code: str = TIMEOUT) -> None:
        super().__init__(message, error_code=error_code)
