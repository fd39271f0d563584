"""Named crash points: tests make a store action die by SIGKILL exactly between two of its steps.

`PROCVISION_CRASH_AT=<point>` in a process's environment makes it kill itself when it reaches
that point; unset (always, outside tests) every point is a no-op costing one dict lookup.
Points: install-after-extract, install-after-venv, install-after-marker, replace-after-trash,
install-after-rename, install-after-registry, prune-after-trash, prune-after-registry,
uninstall-after-trash, uninstall-after-registry.
"""

from __future__ import annotations

import os
import signal

ENV = "PROCVISION_CRASH_AT"
POINTS = (
    "install-after-extract",
    "install-after-venv",
    "install-after-marker",
    "replace-after-trash",
    "install-after-rename",
    "install-after-registry",
    "prune-after-trash",
    "prune-after-registry",
    "uninstall-after-trash",
    "uninstall-after-registry",
)


def crash_point(name: str) -> None:
    """SIGKILL this process when `$PROCVISION_CRASH_AT` names this point."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
