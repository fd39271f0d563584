"""An entry class that is not a BaseAlgorithm subclass and lacks execute and every hook."""

from __future__ import annotations

from typing import Any


class Plain:
    """Has get_info and pre_execute only."""

    def get_info(self) -> dict[str, Any]:
        return {"name": "plain", "version": "0.1.0", "supported_pids": ["X"], "steps": []}

    def pre_execute(self, step_index, pid, session, user_params, shared_mem_id, image_meta):  # type: ignore[no-untyped-def]
        return {"status": "OK", "message": f"plain pre {step_index} {session.id}"}
