"""Request and response models of the HTTP API, the path patterns, and the error responses."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from procvision_algorithm_sdk.contract import SAFE_NAME_PATTERN

__all__ = [
    "ERROR_RESPONSES",
    "NAME_PATTERN",
    "PID_PATTERN",
    "SESSION_PATTERN",
    "ActivateRequest",
    "CallResult",
    "ErrorBody",
    "Health",
    "Readiness",
    "RollbackRequest",
    "StepResult",
    "responses",
]

# The one safe-name rule (contract.is_safe_name, at most 64 characters): one path component.
NAME_PATTERN = f"^{SAFE_NAME_PATTERN}$"
PID_PATTERN = NAME_PATTERN
# Session ids come from station software (board serials, trace ids): printable, bounded.
SESSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@#/+=-]{0,127}$"


class ErrorBody(BaseModel):
    """Every error response."""

    error_code: str = Field(description="code from the ProcVision error table, as a string")
    message: str


class ActivateRequest(BaseModel):
    """Bind pids to an installed package version (also the body of switch)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(pattern=NAME_PATTERN)
    pids: list[Annotated[str, Field(pattern=PID_PATTERN)]] = Field(min_length=1, max_length=1000)


class RollbackRequest(BaseModel):
    """Re-activate the previous version for one pid."""

    model_config = ConfigDict(extra="forbid")
    pid: str = Field(pattern=PID_PATTERN)


class Health(BaseModel):
    """Liveness: the process answers."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Readiness: every active package version warm, none FAILED."""

    model_config = ConfigDict(extra="allow")
    ready: bool
    started: bool
    problems: list[str]
    active: dict[str, Any]
    packages: list[dict[str, Any]]


class CallResult(BaseModel):
    """One Runner result (pre_execute or execute); extra fields are the algorithm's own."""

    model_config = ConfigDict(extra="allow")
    status: Literal["OK", "ERROR"]
    message: str | None = None
    error_code: str | None = None
    data: dict[str, Any] | None = None
    debug: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    package: dict[str, Any] | None = None


class StepResult(BaseModel):
    """Result of phase=step: pre_execute, then execute unless pre_execute failed."""

    model_config = ConfigDict(extra="allow")
    pre_execute: CallResult
    execute: CallResult | None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "bad package (2001..2005)"},
    401: {"model": ErrorBody, "description": "missing or wrong bearer token"},
    404: {"model": ErrorBody, "description": "unknown package, version or session"},
    409: {
        "model": ErrorBody,
        "description": "activation conflict (2006), unsafe uninstall (2007), or a frame lease "
        "that is busy (1005) or holds no committed frame (1002)",
    },
    413: {"model": ErrorBody, "description": "request body too large"},
    403: {"model": ErrorBody, "description": "frame leases are for clients on this host"},
    422: {"model": ErrorBody, "description": "invalid input (1006)"},
    429: {"model": ErrorBody, "description": "the client holds its maximum of frame leases"},
    503: {"model": ErrorBody, "description": "busy (1005): retry after `Retry-After` seconds"},
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error responses of a route, by status."""
    return {s: ERROR_RESPONSES[s] for s in statuses}
