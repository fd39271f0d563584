"""Reading the answer of a `step` call frame (pre + execute in one round trip) as two frames."""

from __future__ import annotations

from typing import Any

__all__ = ["split_step_answer"]


def split_step_answer(phase: str, answer: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """[(phase, frame)] for one phase's answer; [("pre", ...), ("execute", ...)] for a step's.

    A step answer that is not a result holding a `pre` frame (an error frame: busy, crashed,
    timed out, malformed) stands for pre: the step stops there, like a pre that failed.
    """
    if phase != "step":
        return [(phase, answer)]
    pre = answer.get("pre") if answer.get("type") == "result" else None
    if not isinstance(pre, dict):
        return [("pre", answer)]
    out = [("pre", pre)]
    execute = answer.get("execute")
    if isinstance(execute, dict):
        out.append(("execute", execute))
    return out
