"""The Dev Runner for execute-only projects (original SDK 0.3.x; contract section 11).

validate (quick in-process, and --full through a real adapter with the original host's frames),
run (through the Runner, both images in shared memory), the original Python API
`run(project, cur_image, guide_image, step, step_desc, guide_info)`, and the guide_info option.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from procvision_algorithm_sdk import protocol
from procvision_algorithm_sdk.contract import DEFAULT_MAX_DEFECTS, check_execute_result
from procvision_algorithm_sdk.errors import (
    ALGORITHM_EXCEPTION,
    INVALID_PARAMS,
    MANIFEST_MISSING,
    PROTOCOL_ERROR,
    UNKNOWN_ERROR,
    ProcVisionError,
)
from procvision_algorithm_sdk.generation import EXECUTE_ONLY, EXECUTE_ONLY_PARAMS, manifest_api
from procvision_algorithm_sdk.guide import check_guide_info

from ._common import CliError, Report, load_image, load_manifest, make_test_image
from ._runner_session import DEV_PID, open_runner
from .call_logs import CallLogs

if TYPE_CHECKING:  # numpy loads with the images: `bench --help` and `init` skip it
    import numpy as np

SIGNATURE = f"execute({', '.join(EXECUTE_ONLY_PARAMS)})"


def is_execute_only(
    project: str | os.PathLike[str], manifest_path: str | os.PathLike[str] | None = None
) -> bool:
    """Whether the project's manifest declares the execute-only API (False if unreadable)."""
    try:
        return manifest_api(load_manifest(Path(project), manifest_path)) == EXECUTE_ONLY
    except CliError:
        return False


def parse_guide_info(text: str | None) -> list[Any]:
    """--guide-info: a JSON list, or @file.json; [] when not given. CliError 1006 if bad."""
    if text is None or text == "":
        return []
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(INVALID_PARAMS, f"cannot read --guide-info file: {exc}") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CliError(INVALID_PARAMS, f"--guide-info is not valid JSON: {exc}") from None
    problems = check_guide_info(value)
    if problems:
        first = problems[0]
        raise CliError(first.code, f"--guide-info: {first.where}: {first.message}")
    return list(value)


def smoke_guide(width: int, height: int) -> list[dict[str, Any]]:
    """A guide_info for the smoke call: one position in the middle of the image."""
    rect = {"x": width // 4, "y": height // 4, "width": width // 2, "height": height // 2}
    return [{"label": "1", "posList": [rect]}]


def validate_quick(cls: type, manifest: dict[str, Any], report: Report) -> None:
    """In-process: instantiate, setup, one execute on generated images, result checks."""
    if manifest_api(manifest) != EXECUTE_ONLY:
        report.fail(
            "algorithm API",
            f"{cls.__name__} implements the execute-only {SIGNATURE} but manifest.json lists "
            "supported_pids/steps (a lifecycle manifest); drop them or implement get_info",
            MANIFEST_MISSING,
            "manifest",
        )
        return
    report.ok("algorithm API", f"execute-only: {cls.__name__}.{SIGNATURE}")
    try:
        algorithm = cls()
        algorithm.setup()
    except BaseException as exc:
        _failed(report, "instantiate", exc)
        return
    report.ok("instantiate", f"{cls.__name__}() created, setup ran")
    cur = make_test_image()
    guide = make_test_image()
    height, width = cur.shape[:2]
    try:
        result = algorithm.execute(1, "validate smoke", cur, guide, smoke_guide(width, height))
    except BaseException as exc:
        _failed(report, "execute", exc)
        return
    finally:
        try:
            algorithm.teardown()
        except BaseException as exc:
            _failed(report, "teardown", exc)
    status = result.get("status") if isinstance(result, dict) else None
    report.problems(
        "execute",
        check_execute_result(result, width, height, DEFAULT_MAX_DEFECTS),
        f"status {status}, result contract holds",
    )


def _failed(report: Report, name: str, exc: BaseException) -> None:
    code = exc.error_code if isinstance(exc, ProcVisionError) else ALGORITHM_EXCEPTION
    report.fail(name, f"raised {type(exc).__name__}: {exc}", code)


def validate_full(project: Path, manifest: dict[str, Any], report: Report) -> None:
    """A real adapter with PROC_STRICT_STDIO=1, driven with the original host's frames."""
    from procvision_algorithm_sdk.shared_memory import (
        dev_clear_shared_memory,
        write_image_array_to_shared_memory,
    )

    from ._worker_session import EXIT_TIMEOUT_S, START_TIMEOUT_S, ProtocolBroken, WorkerSession
    from .full import _check_frame

    image = make_test_image()
    height, width = image.shape[:2]
    ids = [f"pv-validate-{os.getpid()}-{uuid.uuid4().hex[:8]}-{part}" for part in ("c", "g")]
    env = dict(os.environ)
    env["PROC_ALGO_ROOT"] = str(project.resolve())
    env["PROC_STRICT_STDIO"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    metas = [write_image_array_to_shared_memory(shm_id, image) for shm_id in ids]
    worker = WorkerSession(project, manifest["entry_point"], env)
    try:
        hello = worker.receive(START_TIMEOUT_S)
        if hello.get("type") != "hello":
            code = str(hello.get("error_code") or PROTOCOL_ERROR)
            report.fail("protocol hello", f"{hello.get('type')}: {hello.get('message')}", code)
            return
        if hello.get("api") != EXECUTE_ONLY:
            report.fail(
                "algorithm API",
                f"manifest.json has no supported_pids (execute-only) but the worker reports the "
                f"{hello.get('api')!r} API; implement {SIGNATURE}",
                MANIFEST_MISSING,
                "manifest",
            )
            return
        report.ok("protocol hello", f"api execute-only, capabilities {hello['capabilities']}")
        worker.send(protocol.hello_from_runner("procvision-cli", 0, 0))
        frame = {
            "type": "call",
            "request_id": "validate-1",
            "data": {
                "step_index": 1,
                "step_desc": "validate --full",
                "guide_info": smoke_guide(width, height),
                "cur_image_shm_id": ids[0],
                "cur_image_meta": dict(metas[0], timestamp_ms=int(time.time() * 1000)),
                "guide_image_shm_id": ids[1],
                "guide_image_meta": dict(metas[1], timestamp_ms=int(time.time() * 1000)),
            },
        }
        worker.send(frame)
        answer = worker.receive(START_TIMEOUT_S)
        _check_frame(report, "execute (host frame, strict stdio)", answer, "execute", width, height)
        worker.send(protocol.shutdown("validate-shutdown"))
        ack = worker.receive(EXIT_TIMEOUT_S)
        exit_code = worker.close()
        trailing = worker.trailing_stdout()
        if ack.get("type") != "shutdown" or trailing or exit_code != 0:
            why = trailing or f"shutdown answered {ack.get('type')!r}, exit code {exit_code}"
            report.fail("stdout clean", why, PROTOCOL_ERROR, "shutdown")
        else:
            report.ok("stdout clean", "only frames on stdout; the worker exited 0")
    except ProtocolBroken as exc:
        report.fail("stdout clean", str(exc), PROTOCOL_ERROR)
    finally:
        worker.close()
        for shm_id in ids:
            dev_clear_shared_memory(shm_id)


def run_execute_only(
    project: str | os.PathLike[str],
    cur_image: str | os.PathLike[str] | np.ndarray,
    guide_image: str | os.PathLike[str] | np.ndarray,
    *,
    step: int | None = None,
    step_desc: str = "",
    guide_info: list[Any] | None = None,
    entry: str | None = None,
    logs: CallLogs | None = None,
) -> dict[str, Any]:
    """One execute through a real worker (the Runner); its result dict. CliError on bad input.

    With `logs` (capturing): StartFailed when the worker did not start, and the result has the
    call's worker log entries as `logs`.
    """
    import numpy as np

    root = Path(project)
    if not root.is_dir():
        raise CliError(MANIFEST_MISSING, f"project directory not found: {root}")
    cur = cur_image if isinstance(cur_image, np.ndarray) else load_image(cur_image)
    guide = guide_image if isinstance(guide_image, np.ndarray) else load_image(guide_image)
    config: dict[str, Any] = {"extra_env": {"PROC_ENTRY_POINT": entry}} if entry else {}
    session = f"cli-{uuid.uuid4().hex[:12]}"
    with open_runner(root, logs, **config) as (runner, _info):
        result = dict(
            runner.execute(
                DEV_PID,
                1 if step is None else step,
                cur,
                session_id=session,
                guide_frame=guide,
                step_desc=step_desc,
                guide_info=guide_info if guide_info is not None else [],
            )
        )
        if logs is not None:
            result["logs"] = logs.take(session)
        return result


def run(
    project: str | os.PathLike[str],
    cur_image_path: str | os.PathLike[str],
    guide_image_path: str | os.PathLike[str],
    step_index: int | None = None,
    step_desc: str | None = "",
    guide_info: Any = None,
) -> dict[str, Any]:
    """The original 0.3.x Python API: {"execute": result}; never raises."""
    try:
        info = guide_info
        if isinstance(info, str):
            info = parse_guide_info(info)
        result = run_execute_only(
            project,
            cur_image_path,
            guide_image_path,
            step=step_index,
            step_desc=step_desc or "",
            guide_info=info,
        )
    except CliError as exc:
        result = _error(exc.code, exc.message)
    except Exception as exc:  # the Runner refused the package (RunnerError) or a bug of ours
        result = _error(str(getattr(exc, "error_code", "") or UNKNOWN_ERROR), str(exc))
    return {"execute": result}


def _error(code: str, message: str) -> dict[str, Any]:
    return {"status": "ERROR", "error_code": str(code), "message": message, "data": {}}
