"""The stale sweep: unlink our segments whose owner process is gone."""

from __future__ import annotations

import contextlib
import os

from .._process import pid_alive
from .layout import _ID_NAME, SEGMENT_PREFIX, mark_retired, owner_pid_from_name, read_header
from .mapping import (
    _posixshmem,
    attach_segment,
    attach_segment_readonly,
    close_quietly,
    unlink_segment,
)

_SHM_DIR = "/dev/shm"


def _header_owner(name: str) -> int | None:
    """Owner pid from the header of an id-derived segment, None when the header is not ours."""
    try:
        mapping = attach_segment_readonly(name)
    except (OSError, ValueError):
        return None
    try:
        header = read_header(mapping)
        return header.owner_pid if header.valid else None
    except ValueError:
        return None
    finally:
        mapping.close()


def sweep_stale_segments() -> list[str]:
    """Unlink our segments whose owner process is gone; return their names.

    Linux only (lists /dev/shm); elsewhere a no-op returning []. The owner pid comes from the
    name of SlotRing segments and from the header of id-derived (seed API) segments. A segment
    whose header is not written yet is left alone.
    """
    if not os.path.isdir(_SHM_DIR) or _posixshmem is None:
        return []
    try:
        entries = os.listdir(_SHM_DIR)
    except OSError:
        return []
    removed: list[str] = []
    for name in entries:
        if not name.startswith(SEGMENT_PREFIX):
            continue
        pid = owner_pid_from_name(name)
        if pid is None and _ID_NAME.match(name):
            pid = _header_owner(name)
        if pid is None or pid_alive(pid):
            continue
        with contextlib.suppress(OSError):
            shm = attach_segment(name)
            with contextlib.suppress(Exception):
                mark_retired(shm.buf)
            close_quietly(shm)
        if unlink_segment(name):
            removed.append(name)
    return removed
