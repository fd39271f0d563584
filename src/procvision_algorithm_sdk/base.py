"""BaseAlgorithm: the class every algorithm package subclasses."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Any

from .diagnostics import Diagnostics
from .generation import BOTH_SHAPES, EXECUTE_ONLY, api_of
from .logger import StructuredLogger
from .session import Session

# What an execute-only class need not implement (the original SDK 0.3.x had neither method).
_LIFECYCLE_ONLY = frozenset({"get_info", "pre_execute"})


class _AlgorithmMeta(ABCMeta):
    """ABCMeta that knows the two APIs: the `execute` signature decides what stays abstract."""

    def __new__(mcls, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kw: Any):
        cls = super().__new__(mcls, name, bases, namespace, **kw)
        if cls.__abstractmethods__ and api_of(cls) == EXECUTE_ONLY:
            cls.__abstractmethods__ = frozenset(cls.__abstractmethods__ - _LIFECYCLE_ONLY)
        return cls

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        missing = getattr(cls, "__abstractmethods__", None)
        if missing:
            raise TypeError(
                f"cannot instantiate {cls.__qualname__}: missing {', '.join(sorted(missing))}; "
                f"a BaseAlgorithm subclass must {BOTH_SHAPES}"
            )
        return super().__call__(*args, **kwargs)


class BaseAlgorithm(metaclass=_AlgorithmMeta):
    """Base of an algorithm (lifecycle or execute-only API): one instance serves every PID."""

    def __init__(self) -> None:
        self.logger = StructuredLogger()
        self.diagnostics = Diagnostics()
        self._resources_loaded = False
        self._model_version: str | None = None
        self._supported_pids: list[str] = []

    def setup(self) -> None:
        """Load models and heavy resources; called once per process."""

    def teardown(self) -> None:
        """Release resources; called once before the process exits."""

    def on_step_start(self, step_index: int, session: Session, context: dict[str, Any]) -> None:
        """Called once per step before its first call."""

    def on_step_finish(self, step_index: int, session: Session, result: dict[str, Any]) -> None:
        """Called once per step after its last call."""

    def reset(self, session: Session) -> None:
        """Called when the platform restarts a detection run (re-inspection)."""

    @abstractmethod
    def get_info(self) -> dict[str, Any]:
        """Return name, version, description, supported_pids and steps."""

    @abstractmethod
    def pre_execute(
        self,
        step_index: int,
        pid: str,
        session: Session,
        user_params: dict[str, Any],
        shared_mem_id: str,
        image_meta: dict[str, Any],
    ) -> dict[str, Any]:
        """Prepare a step (calibration, reference checks); return a pre_execute result."""

    @abstractmethod
    def execute(
        self,
        step_index: int,
        pid: str,
        session: Session,
        user_params: dict[str, Any],
        shared_mem_id: str,
        image_meta: dict[str, Any],
    ) -> dict[str, Any]:
        """Inspect a step; return an execute result with the OK/NG verdict."""
