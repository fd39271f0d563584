"""Frames as files for a worker that keeps the original SDK (`install --keep-bundled-sdk`).

The original SDK's adapter (0.0.6/0.0.7) reads a frame from `$PROC_SHM_DIR/<safe id>.npy`. For
such a worker only, the Runner gives it a private directory, writes each call's frame there
as an `.npy` file, removes the file when the call ends, and removes the directory when the
worker is reaped; a Runner that died leaves its directories to the next Runner's start-up
sweep. Nothing else in the Runner ever writes frames as files (contract section 10).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from procvision_algorithm_sdk._process import pid_alive

TRANSPORT_SHM = "shared_memory"
TRANSPORT_FILES = "files"
TRANSPORTS = (TRANSPORT_SHM, TRANSPORT_FILES)


def frames_root() -> Path:
    """Where the Runner keeps legacy workers' frame directories (private to this user)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"procvision-runner-{uid}" / "legacy-frames"


def worker_dir(worker_id: str) -> Path:
    """Create the private (0700) frame directory of one worker: `<root>/<runner pid>-<id>`."""
    root = frames_root()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = root / f"{os.getpid()}-{worker_id}"
    path.mkdir(mode=0o700)
    return path


def remove_dir(path: Path | None) -> None:
    """Remove a worker's frame directory and whatever a crashed call left in it."""
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


def sweep() -> list[str]:
    """Remove frame directories whose Runner process is gone; their names."""
    root = frames_root()
    removed: list[str] = []
    if not root.is_dir():
        return removed
    for child in root.iterdir():
        owner = child.name.split("-", 1)[0]
        if not owner.isdigit() or (int(owner) != os.getpid() and not pid_alive(int(owner))):
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child.name)
    return removed


class FileFrame:
    """One frame written for one call; `release()` removes the file (the slot-like handle)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def release(self) -> None:
        """Remove the file; the call that used it has ended."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def write_frame(
    directory: Path, frame: Any, color_space: str, extra_meta: dict[str, Any]
) -> tuple[FileFrame, str, dict[str, Any]]:
    """Write `frame` (H x W or H x W x 1|3|4) as `<dir>/<id>.npy`: (handle, id, image_meta)."""
    # Imported here: the store imports this module for its transport names alone.
    import numpy as np

    from procvision_algorithm_sdk.legacy_frames import NPY_SUFFIX, legacy_path

    array = np.asarray(frame)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ValueError(f"a frame must be H x W or H x W x 1|3|4, not {array.shape}")
    shared_mem_id = f"pvf-{uuid.uuid4().hex}"
    path = legacy_path(directory, shared_mem_id, NPY_SUFFIX)
    with open(path, "xb") as out:  # never follows or replaces an existing file
        np.save(out, array, allow_pickle=False)
    gray = array.ndim == 2 or array.shape[2] == 1
    meta = {
        **extra_meta,
        "width": int(array.shape[1]),
        "height": int(array.shape[0]),
        "color_space": "GRAY" if gray else color_space,
    }
    return FileFrame(path), shared_mem_id, meta


def worker_env_for(directory: Path) -> dict[str, str]:
    """The variable that points the original SDK's reader at the worker's directory."""
    from procvision_algorithm_sdk.legacy_frames import DIR_ENV

    return {DIR_ENV: str(directory)}
