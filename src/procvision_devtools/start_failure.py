"""A package whose worker did not start (import error, setup exception), told once and readably.

The Runner keeps such a package loaded in state FAILED and answers every call with the chain
of its layers' messages; `run` instead stops at once with the adapter's own diagnosis and the
traceback of the author's code from the worker's start-up records.
"""

from __future__ import annotations

import sys
from typing import Any

from procvision_algorithm_sdk.errors import MODEL_NOT_FOUND

from ._common import CliError, print_json
from .call_logs import CallLogs, format_entry

__all__ = ["StartFailed", "check_started", "report_start_failure"]


class StartFailed(CliError):
    """The package's worker did not start; `logs` are its start-up records."""

    def __init__(self, code: str, message: str, logs: list[dict[str, Any]]) -> None:
        super().__init__(code, message)
        self.logs = logs


def check_started(runner: Any, key: Any, logs: CallLogs) -> None:
    """Raise StartFailed when the loaded package `key` is FAILED (its workers did not start)."""
    for item in runner.packages():
        if (item.get("name"), item.get("version")) != tuple(key)[:2]:
            continue
        if str(item.get("state")).upper() != "FAILED":
            return
        error = item.get("error") or {}
        entries = logs.take(None)  # no session: what the worker wrote while starting
        # the adapter's own record says it best ("worker start failed: cannot import ...")
        said = [e["message"] for e in entries if e["level"] == "error"]
        message = said[-1] if said else str(error.get("message") or "the worker did not start")
        raise StartFailed(str(error.get("error_code") or MODEL_NOT_FOUND), message, entries)


def report_start_failure(exc: StartFailed, as_json: bool, verbose: bool) -> int:
    """Print the failure once: `error <code>: <message>` and the traceback block; return 1."""
    shown = exc.logs if verbose else [e for e in exc.logs if e["level"] == "error"]
    if as_json:
        print_json(
            {"status": "ERROR", "error_code": exc.code, "message": exc.message, "logs": exc.logs}
        )
        return 1
    lines = [f"error {exc.code}: {exc.message}"]
    for entry in shown:
        if verbose or entry["message"] != exc.message:
            lines.extend(format_entry(entry, indent="  "))
        elif isinstance(entry.get("traceback"), str):
            lines.extend("  " + line for line in entry["traceback"].rstrip("\n").splitlines())
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()
    return 1
