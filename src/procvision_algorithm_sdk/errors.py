"""Exception classes and the one table of error codes (contract section 4)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorInfo:
    """One row of the error-code table."""

    code: str
    name: str
    retryable: bool
    description: str


INVALID_PID = "1001"
IMAGE_LOAD_FAILED = "1002"
MODEL_NOT_FOUND = "1003"
GPU_OOM = "1004"
TIMEOUT = "1005"
INVALID_PARAMS = "1006"
COORDINATE_INVALID = "1007"
INVALID_RESULT = "1008"
ALGORITHM_EXCEPTION = "1009"
PROTOCOL_ERROR = "1010"
UNKNOWN_ERROR = "9999"
INVALID_ZIP = "2001"
MANIFEST_MISSING = "2002"
INCOMPATIBLE_PYTHON = "2003"
WHEELS_MISSING = "2004"
INSTALL_FAILED = "2005"
ACTIVATION_CONFLICT = "2006"
UNSAFE_UNINSTALL = "2007"

ERROR_CODES: dict[str, ErrorInfo] = {
    row.code: row
    for row in (
        ErrorInfo(INVALID_PID, "invalid_pid", False, "pid not in supported_pids"),
        ErrorInfo(IMAGE_LOAD_FAILED, "image_load_failed", False, "missing/undecodable image"),
        ErrorInfo(MODEL_NOT_FOUND, "model_not_found", False, "missing model or asset"),
        ErrorInfo(GPU_OOM, "gpu_oom", False, "GPU out of memory"),
        ErrorInfo(TIMEOUT, "timeout", True, "deadline passed, heartbeat lost or worker crashed"),
        ErrorInfo(INVALID_PARAMS, "invalid_params", False, "user_params or image_meta invalid"),
        ErrorInfo(COORDINATE_INVALID, "coordinate_invalid", False, "rect outside image"),
        ErrorInfo(INVALID_RESULT, "invalid_result", False, "result breaks the result contract"),
        ErrorInfo(ALGORITHM_EXCEPTION, "algorithm_exception", False, "uncaught exception"),
        ErrorInfo(PROTOCOL_ERROR, "protocol_error", False, "malformed frame or unknown message"),
        ErrorInfo(UNKNOWN_ERROR, "unknown_error", False, "anything else"),
        ErrorInfo(INVALID_ZIP, "invalid_zip", False, "package zip unreadable or unsafe"),
        ErrorInfo(MANIFEST_MISSING, "manifest_missing", False, "manifest missing or invalid"),
        ErrorInfo(INCOMPATIBLE_PYTHON, "incompatible_python", False, "wheel/python mismatch"),
        ErrorInfo(WHEELS_MISSING, "wheels_missing", False, "requirement not in wheels/"),
        ErrorInfo(INSTALL_FAILED, "install_failed", False, "venv build or smoke test failed"),
        ErrorInfo(ACTIVATION_CONFLICT, "activation_conflict", False, "pid bound elsewhere"),
        ErrorInfo(UNSAFE_UNINSTALL, "unsafe_uninstall", False, "version still active"),
    )
}


def error_name(code: str | None) -> str:
    """Return the table name of a code ("unknown_error" for codes not in the table)."""
    info = ERROR_CODES.get(str(code)) if code is not None else None
    return info.name if info else "unknown_error"


def is_retryable(code: str | None) -> bool:
    """Return whether a call that failed with this code may be retried."""
    info = ERROR_CODES.get(str(code)) if code is not None else None
    return bool(info and info.retryable)


class ProcVisionError(Exception):
    """Base of the SDK's exceptions; carries an error code."""

    error_code: str = UNKNOWN_ERROR
    retryable: bool = False

    def __init__(self, message: str = "", *, error_code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if error_code is not None:
            self.error_code = str(error_code)


class RecoverableError(ProcVisionError):
    """A failure the platform may retry (transient I/O, a busy device)."""

    error_code = ALGORITHM_EXCEPTION
    retryable = True


class FatalError(ProcVisionError):
    """A failure that leaves the process unusable; the Runner restarts the worker."""

    error_code = ALGORITHM_EXCEPTION
    retryable = False


class GPUOutOfMemoryError(ProcVisionError):
    """The GPU ran out of memory (code 1004)."""

    error_code = GPU_OOM
    retryable = False


class ProgramError(ProcVisionError):
    """A programming error in the algorithm (code 1009)."""

    error_code = ALGORITHM_EXCEPTION
    retryable = False


class ImageLoadError(ProcVisionError):
    """An image could not be read from shared memory (code 1002, strict mode)."""

    error_code = IMAGE_LOAD_FAILED
    retryable = False


class ProtocolError(ProcVisionError):
    """A malformed frame or an unknown message (code 1010)."""

    error_code = PROTOCOL_ERROR
    retryable = False
