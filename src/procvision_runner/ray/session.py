"""A product's steps through a DeploymentHandle, with the session's state carried by the caller.

Why carried and not pinned: Ray Serve routes each request to any replica, and a replica can die.
The caller keeps the state that the last finished step left (the answer hands it back), and
sends it with the next step; the replica that serves it adopts it first (Runner.restore_session,
a no-op when it holds that state already). So every step sees its session whichever node runs
it, and a lost replica loses no finished step's state.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..config import RunnerConfig
from .deployment import request_timeout_s

__all__ = ["CarriedSession"]


class CarriedSession:
    """One detection run (one product) over a handle: run its steps in order."""

    def __init__(
        self,
        handle: Any,
        session_id: str | None = None,
        *,
        context: dict[str, Any] | None = None,
        runner_config: RunnerConfig | None = None,
    ) -> None:
        self.handle = handle
        self.session_id = session_id or f"ray-{uuid.uuid4().hex}"
        self.context = dict(context or {})
        self.state: dict[str, Any] | None = None
        self.nodes: list[str] = []  # the node that ran each step, in order
        self.timeout_s = request_timeout_s(runner_config or RunnerConfig())

    def run_step(self, pid: str, step_index: int, frame: Any, **kwargs: Any) -> dict[str, Any]:
        """Run one step; keep the state it leaves; return the Runner's result dict."""
        response = self.handle.run_step.remote(
            pid,
            step_index,
            frame,
            session_id=self.session_id,
            session_context=self.context,
            session_state=self.state,
            **kwargs,
        )
        answer = response.result(timeout_s=self.timeout_s)
        if answer.get("session_state") is not None:
            self.state = answer["session_state"]
        self.nodes.append(str(answer.get("node")))
        return dict(answer["result"])
