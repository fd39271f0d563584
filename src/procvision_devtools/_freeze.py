"""`package -a/--auto-freeze`: the original tool's way to get a requirements.txt (pip freeze)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from procvision_algorithm_sdk.errors import WHEELS_MISSING

from ._common import CliError
from ._requirements import SDK_PROJECT, canonical

FREEZE_TIMEOUT_S = 300.0


def freeze_requirements(path: Path) -> list[str]:
    """Write `pip freeze` of this interpreter to `path` (it did not exist); return notes.

    Lines that cannot become offline wheels (editable installs, direct URL references) and the
    SDK itself (package adds its own wheel) are left out and named in the notes.
    """
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "freeze"]
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=FREEZE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CliError(WHEELS_MISSING, f"--auto-freeze: pip freeze failed: {exc}") from None
    if proc.returncode != 0:
        raise CliError(WHEELS_MISSING, f"--auto-freeze: pip freeze failed: {proc.stderr[-500:]}")
    kept: list[str] = []
    dropped: list[str] = []
    for raw in proc.stdout.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name = line.split("==")[0].split(" @ ")[0].strip()
        if line.startswith(("-e", "--editable")) or " @ " in line or "==" not in line:
            dropped.append(line)
        elif canonical(name) == canonical(SDK_PROJECT):
            continue
        else:
            kept.append(line)
    header = "# Written by procvision-cli package --auto-freeze (pip freeze of this interpreter)\n"
    path.write_text(header + "".join(f"{line}\n" for line in kept), encoding="utf-8")
    notes = [f"--auto-freeze wrote {path} from pip freeze ({len(kept)} requirement(s))"]
    if dropped:
        notes.append("--auto-freeze left out (not installable from wheels): " + "; ".join(dropped))
    return notes
