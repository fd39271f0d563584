"""BaseAlgorithm: the class every algorithm package subclasses."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from .diagnostics import Diagnostics
from .logger import StructuredLogger
from .session import Session


class BaseAlgorithm(ABC):
    """Base of an algorithm: one instance serves every PID it supports."""

    def __init__(self) -> None:
        self.logger = StructuredLogger()
        self.diagnostics = Diagnostics()
        self._resources_loaded = False
        self._model_version: str | None = None
        self._supported_pids: list[str] = []

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Load models and heavy resources; called once per process."""

    def teardown(self) -> None:  # noqa: B027 - optional hook
        """Release resources; called once before the process exits."""

    def on_step_start(  # noqa: B027 - optional hook
        self, step_index: int, session: Session, context: dict[str, Any]
    ) -> None:
        """Called once per step before its first call."""

    def on_step_finish(  # noqa: B027 - optional hook
        self, step_index: int, session: Session, result: dict[str, Any]
    ) -> None:
        """Called once per step after its last call."""

    def reset(self, session: Session) -> None:  # noqa: B027 - optional hook
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
