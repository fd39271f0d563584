"""`procvision-cli bench`: latency percentiles of a step through the adapter."""

from __future__ import annotations

from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register the bench command."""
    subparsers.add_parser("bench", help="benchmark a step through the adapter")
