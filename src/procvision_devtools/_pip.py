"""Running pip (the current interpreter's) with a deadline; a failure is a CliError 2004."""

from __future__ import annotations

import subprocess
import sys

from procvision_algorithm_sdk.errors import WHEELS_MISSING

from ._common import CliError

PIP_TIMEOUT_S = 1800.0


def run_pip(args: list[str], what: str, timeout_s: float = PIP_TIMEOUT_S) -> str:
    """Run `python -m pip ARGS`; return its stdout, or raise CliError(2004) naming `what`."""
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise CliError(WHEELS_MISSING, f"{what}: pip did not finish in {timeout_s:.0f} s") from None
    except OSError as exc:
        raise CliError(WHEELS_MISSING, f"{what}: cannot run pip: {exc}") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise CliError(WHEELS_MISSING, f"{what} failed:\n{tail}")
    return proc.stdout
