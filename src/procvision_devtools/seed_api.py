"""The original SDK's Python helpers, kept with their signatures and return shapes.

`init_project`, `run_adapter` and `validate_adapter` come from the original SDK's `cli` module
(0.0.6/0.0.7); they run on today's tools (the scaffold, the Runner, `validate --full`) and, like
the originals, answer with plain dicts instead of raising.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from procvision_algorithm_sdk.errors import UNKNOWN_ERROR

from ._common import CliError, parse_params
from ._loader import describe_exception
from .run import refused, run_steps, step_pair

PLACEHOLDER_PID = "PID_TO_FILL"  # what the original init wrote when no pid was given


_NOT_GIVEN: Any = object()


def init_project(
    name: str,
    target_dir: str | None,
    pids_csv: str | None,
    version: str | None = None,
    description: Any = _NOT_GIVEN,
) -> dict[str, Any]:
    """Original API: scaffold a project; {"status": "OK", "path"} or {"status": "ERROR", ...}.

    0.0.x: `init_project(name, dir, pids_csv, version, desc)` (lifecycle); 0.3.x:
    `init_project(name, dir, version, desc)` (four arguments: an execute-only project).
    """
    from procvision_algorithm_sdk.generation import EXECUTE_ONLY, LIFECYCLE

    from .init import scaffold

    api = LIFECYCLE
    if description is _NOT_GIVEN:  # the 0.3.x signature: (name, dir, version, desc)
        api, pids_csv, version, description = EXECUTE_ONLY, None, pids_csv, version
    pids = [p.strip() for p in (pids_csv or "").split(",") if p.strip()] or [PLACEHOLDER_PID]
    try:
        created = scaffold(
            name,
            Path(target_dir) if target_dir else None,
            pids,
            version or "1.0.0",
            description,
            False,
            api,
        )
    except CliError as exc:
        return {"status": "ERROR", "message": exc.message, "error_code": exc.code}
    return {"status": "OK", "path": created["project"]}


@contextlib.contextmanager
def _worker_logs(enabled: bool) -> Iterator[None]:
    """`tail_logs=True`: print the worker's log records to stderr while the run lasts."""
    if not enabled:
        yield
        return
    logger = logging.getLogger("procvision.worker")
    handler = logging.StreamHandler(sys.stderr)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def run_adapter(
    project: str,
    pid: str,
    image_path: str,
    params_json: str | None,
    step_index: int | None = None,
    entry: str | None = None,
    tail_logs: bool = False,
) -> dict[str, Any]:
    """Original API: one step through a real adapter worker; both entries are always dicts."""
    try:
        params = parse_params(params_json)
        config = {"extra_env": {"PROC_ENTRY_POINT": entry}} if entry else {}
        with _worker_logs(tail_logs):
            outcome = run_steps(project, pid, image_path, params, step=step_index, config=config)
        return step_pair(outcome[0]["pre_execute"], outcome[0]["execute"])
    except CliError as exc:
        return refused(exc.code, exc.message)
    except Exception as exc:  # the Runner refused the package (RunnerError) or a bug of ours
        return refused(
            str(getattr(exc, "error_code", "") or UNKNOWN_ERROR), describe_exception(exc)
        )


def validate_adapter(project: str, entry: str | None, tail_logs: bool = False) -> dict[str, Any]:
    """Original API: `validate --full` (a real adapter process); the report dict."""
    from .validate import validate

    with _worker_logs(tail_logs):
        if not entry:
            return validate(project, full=True)
        manifest_path = Path(project) / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return validate(project, full=True)  # the report says what is wrong with it
        if not isinstance(manifest, dict):
            return validate(project, full=True)
        with tempfile.TemporaryDirectory(prefix="pv-validate-entry-") as tmp:
            override = Path(tmp) / "manifest.json"
            override.write_text(json.dumps({**manifest, "entry_point": entry}), encoding="utf-8")
            return validate(project, str(override), full=True)
