"""Typed results of the HTTP API: what /inspect answers, field by field (contract section 3)."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ExecuteData",
    "ExecuteResult",
    "FrameLease",
    "InspectResult",
    "PackageDescription",
    "PackageRef",
    "ParamSpec",
    "PidDescription",
    "PreExecuteData",
    "PreExecuteResult",
    "Problem",
    "Rect",
    "StepResult",
    "StepSpec",
    "Timings",
]


class Rect(BaseModel):
    """A rectangle in image pixels, origin top-left (contract section 3)."""

    model_config = ConfigDict(extra="allow")
    x: int = Field(ge=0)
    y: int = Field(ge=0)
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    label: str | None = None
    score: float | None = Field(default=None, ge=0, le=1)


class Timings(BaseModel):
    """Where the time of one phase went, in milliseconds."""

    model_config = ConfigDict(extra="allow")
    queue_ms: float
    transfer_ms: float
    algorithm_ms: float
    total_ms: float


class PackageRef(BaseModel):
    """The package version that answered."""

    name: str
    version: str


class Problem(BaseModel):
    """One broken rule of the result contract."""

    model_config = ConfigDict(extra="allow")
    where: str
    code: str
    message: str


class PreExecuteData(BaseModel):
    """pre_execute's data: calibration rects (plus the algorithm's own keys)."""

    model_config = ConfigDict(extra="allow")
    calibration_rects: list[Rect] | None = None
    phase: str | None = None
    step_index: int | None = None


class ExecuteData(BaseModel):
    """execute's data: the verdict and its rects (plus the algorithm's own keys)."""

    model_config = ConfigDict(extra="allow")
    result_status: Literal["OK", "NG"] | None = Field(
        default=None, description="the business verdict; present when status is OK"
    )
    ng_reason: str | None = None
    defect_rects: list[Rect] | None = None
    position_rects: list[Rect] | None = None
    phase: str | None = None
    step_index: int | None = None


class _Result(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["OK", "ERROR"] = Field(description="the call's outcome, not the verdict")
    message: str
    error_code: str | None = Field(description="a code of the ProcVision table when ERROR")
    debug: dict[str, Any] | None = None
    diagnostics: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    retryable: bool = False
    timings: Timings
    package: PackageRef | None
    problems: list[Problem] | None = None
    original: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None


class PreExecuteResult(_Result):
    """The result of pre_execute (phase=pre)."""

    data: PreExecuteData


class ExecuteResult(_Result):
    """The result of execute (phase=execute): data.result_status is the verdict."""

    data: ExecuteData


class StepResult(BaseModel):
    """phase=step: pre_execute, then execute unless pre_execute answered ERROR (then null).

    An execute-only package has no pre_execute: it is null and execute holds the one result.
    """

    pre_execute: PreExecuteResult | None
    execute: ExecuteResult | None


class FrameLease(BaseModel):
    """A leased frame buffer: map `segment` (POSIX: shm_open(posix_name); Windows: the name)."""

    lease_id: str
    segment: str
    posix_name: str
    windows_name: str
    size: int = Field(description="bytes of the whole segment")
    header_size: int
    payload_offset: int
    payload_size: int
    height: int
    width: int
    channels: int
    dtype: Literal["uint8"]
    layout_version: int
    seq_offset: int = Field(description="offset of the 8-byte little-endian sequence number")
    idle_timeout_s: float
    local_socket: str | None = Field(
        None,
        description="a Unix socket on this host that answers POST /inspect forms naming "
        "this lease faster than TCP (same request and answer); absent when off",
    )


class ParamSpec(BaseModel):
    """One user parameter of a step (contract section 5)."""

    model_config = ConfigDict(extra="allow")
    key: str
    type: str
    description: str | None = None
    required: bool | None = None
    default: Any = None
    min: int | float | None = None
    max: int | float | None = None
    unit: str | None = None
    choices: list[Any] | None = None


class StepSpec(BaseModel):
    """One step of a package."""

    model_config = ConfigDict(extra="allow")
    index: int
    name: str | None = None
    params: list[ParamSpec] = Field(default_factory=list)


class PackageDescription(BaseModel):
    """One package version: what a station UI needs to draw its parameter panel."""

    name: str
    version: str
    description: str | None
    state: str
    loaded_state: str | None
    supported_pids: list[str]
    active_pids: list[str]
    api_generation: Literal["lifecycle", "execute-only"]
    steps: list[StepSpec]
    steps_source: Literal["get_info", "manifest"]
    manifest: dict[str, Any]
    info: dict[str, Any] | None


class PidDescription(BaseModel):
    """What a pid runs."""

    pid: str
    package: PackageRef
    routed: bool
    activated_at: Any = None
    state: str | None
    api_generation: Literal["lifecycle", "execute-only"]
    steps: list[StepSpec]


# phase=step answers a StepResult, phase=pre a PreExecuteResult, phase=execute an ExecuteResult.
InspectResult = StepResult | PreExecuteResult | ExecuteResult
