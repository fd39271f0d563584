""" "did you mean": the closest of some known names to a word that is almost one of them."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["NEAR_MISS", "did_you_mean"]

# `entrypoint` -> `entry_point` is 0.95, `supported_pid` -> `supported_pids` 0.96: one or two
# letters off a key name stays above it, an unrelated key of the author's own stays below.
NEAR_MISS = 0.8


def did_you_mean(word: str, choices: Iterable[object], cutoff: float = NEAR_MISS) -> str | None:
    """The choice closest to `word` (difflib ratio >= cutoff, case-insensitive), or None."""
    by_lower = {c.lower(): c for c in choices if isinstance(c, str)}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=cutoff)
    return by_lower[close[0]] if close else None
