"""Size bounds of an offline package zip: per member, for the whole archive, and against disk.

A zip bomb need not have one absurd member: thousands of members each just under the per-member
ratio threshold unpack gigabytes together. So the declared total is bounded by its ratio to the
archive's compressed size and by a share of the free disk where it will be unpacked; the
extraction counts real bytes against the same bounds, because declared sizes can lie.
"""

from __future__ import annotations

from dataclasses import dataclass

from procvision_algorithm_sdk.contract import Problem
from procvision_algorithm_sdk.errors import INVALID_ZIP


@dataclass(frozen=True)
class ZipLimits:
    """Limits that keep a zip bomb or an absurd archive out of the store."""

    max_entries: int = 20_000
    max_total_bytes: int = 8 * 1024**3
    max_entry_ratio: float = 200.0
    # Tiny members compress absurdly well (a file of spaces); only ratios of big ones matter.
    ratio_min_bytes: int = 1024 * 1024
    # Many members each under ratio_min_bytes are still a bomb together: the whole archive's
    # declared size over its compressed size is bounded too, once it is big enough to matter.
    max_total_ratio: float = 100.0
    total_ratio_min_bytes: int = 64 * 1024**2
    # The unpacked package may take this share of the store's free disk at most (its venv and
    # the archived zip need room too).
    max_disk_fraction: float = 0.5


def size_bound(limits: ZipLimits, free_bytes: int | None) -> tuple[int, str]:
    """The most uncompressed bytes a package may unpack to, and what sets that bound."""
    if free_bytes is None:
        return limits.max_total_bytes, "the limit"
    share = int(max(free_bytes, 0) * limits.max_disk_fraction)
    if share < limits.max_total_bytes:
        return share, (
            f"{limits.max_disk_fraction:g} of the store's free disk, {free_bytes} bytes free"
        )
    return limits.max_total_bytes, "the limit"


def totals_problems(
    total: int, packed: int, archive_bytes: int, limits: ZipLimits, free_bytes: int | None
) -> list[Problem]:
    """Bounds on the archive as a whole, from the sizes its central directory declares."""
    problems: list[Problem] = []
    bound, what = size_bound(limits, free_bytes)
    if total > bound:
        problems.append(
            Problem("zip", INVALID_ZIP, f"uncompressed size {total} bytes exceeds {bound} ({what})")
        )
    # Declared compressed sizes can lie upwards; the file's own size cannot.
    compressed = max(min(packed, archive_bytes), 1)
    if total >= limits.total_ratio_min_bytes and total > limits.max_total_ratio * compressed:
        problems.append(
            Problem(
                "zip",
                INVALID_ZIP,
                f"the archive unpacks {total} bytes from {compressed}: ratio "
                f"{total / compressed:.0f}:1 exceeds {limits.max_total_ratio:.0f}:1 (zip bomb?)",
            )
        )
    return problems
