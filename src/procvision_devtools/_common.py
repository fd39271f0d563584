"""Helpers shared by the Dev Runner commands: reports, manifest and image loading, output."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from procvision_algorithm_sdk.contract import Problem
from procvision_algorithm_sdk.errors import (
    IMAGE_LOAD_FAILED,
    INVALID_PARAMS,
    MANIFEST_MISSING,
    ImageLoadError,
    ProcVisionError,
)

if TYPE_CHECKING:  # numpy and Pillow load where an image is made: `--help` and `init` skip them
    import numpy as np

PASS = "PASS"
FAIL = "FAIL"
WARN = "WARN"  # reported, not a failure (a legacy form that still runs)

# Size of the generated smoke-test image: big enough for real algorithms, small enough to be fast.
TEST_IMAGE_WIDTH = 640
TEST_IMAGE_HEIGHT = 480


@dataclass
class Report:
    """A validate report: named checks, each PASS or FAIL, in the order they ran."""

    checks: list[dict[str, Any]] = field(default_factory=list)

    def ok(self, name: str, message: str) -> None:
        """Record a passing check."""
        self.checks.append({"name": name, "result": PASS, "message": message})

    def fail(self, name: str, message: str, code: str | None = None, where: str = "") -> None:
        """Record a failing check with its error code and location."""
        entry: dict[str, Any] = {"name": name, "result": FAIL, "message": message}
        if code is not None:
            entry["code"] = str(code)
        if where:
            entry["where"] = where
        self.checks.append(entry)

    def warn(self, name: str, problem: Problem) -> None:
        """Record a warning: reported with its code and location, but not a failure."""
        self.checks.append(
            {
                "name": name,
                "result": WARN,
                "message": problem.message,
                "code": str(problem.code),
                "where": problem.where,
            }
        )

    def problems(self, name: str, problems: list[Problem], ok_message: str) -> bool:
        """Record one FAIL per problem, or one PASS when there are none; True if it passed."""
        if not problems:
            self.ok(name, ok_message)
            return True
        for problem in problems:
            self.fail(name, problem.message, problem.code, problem.where)
        return False

    @property
    def failed(self) -> int:
        """Number of failing checks."""
        return sum(1 for check in self.checks if check["result"] == FAIL)

    def to_dict(self) -> dict[str, Any]:
        """Return the contract's report shape."""
        failed = self.failed
        warnings = sum(1 for check in self.checks if check["result"] == WARN)
        summary: dict[str, Any] = {
            "status": FAIL if failed or not self.checks else PASS,
            "passed": len(self.checks) - failed - warnings,
            "failed": failed,
        }
        if warnings:
            summary["warnings"] = warnings
        return {
            "summary": summary,
            "checks": list(self.checks),
        }


class CliError(ProcVisionError):
    """A user-facing failure with an error code; printed as one line, never a traceback.

    The arguments stay (code, message): every call site of the CLI passes them in that order.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, error_code=str(code))

    @property
    def code(self) -> str:
        """The error code (the CLI's first name for `error_code`)."""
        return self.error_code


def error_result(code: str, message: str) -> dict[str, Any]:
    """Return an ERROR call result built by the CLI itself (the algorithm never ran)."""
    return {"status": "ERROR", "message": message, "error_code": str(code), "data": {}}


def load_manifest(project: Path, manifest_path: str | os.PathLike[str] | None = None) -> Any:
    """Read a project's manifest.json; CliError 2002 when it is missing or not JSON."""
    path = Path(manifest_path) if manifest_path else project / "manifest.json"
    if not path.is_file():
        raise CliError(MANIFEST_MISSING, f"manifest not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise CliError(MANIFEST_MISSING, f"{path} is not UTF-8: {exc}") from None
    except ValueError as exc:
        raise CliError(MANIFEST_MISSING, f"{path} is not valid JSON: {exc}") from None


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode a PNG/JPEG/BMP/TIFF file into an H x W x 3 uint8 RGB array; CliError 1002 if not."""
    from procvision_algorithm_sdk.imagefile import decode_image

    try:
        return decode_image(path)
    except ImageLoadError as exc:
        raise CliError(IMAGE_LOAD_FAILED, str(exc)) from None


def make_test_image(width: int = TEST_IMAGE_WIDTH, height: int = TEST_IMAGE_HEIGHT) -> np.ndarray:
    """Return a deterministic RGB test image: gradients, a bright board and dark dots."""
    import numpy as np

    ys, xs = np.mgrid[0:height, 0:width]
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[..., 0] = (xs * 255 // max(width - 1, 1)).astype(np.uint8)
    image[..., 1] = (ys * 255 // max(height - 1, 1)).astype(np.uint8)
    image[..., 2] = 96
    top, left = height // 4, width // 4
    image[top : height - top, left : width - left] = (40, 160, 60)
    for cx, cy in ((left + 20, top + 20), (width - left - 20, height - top - 20)):
        image[(xs - cx) ** 2 + (ys - cy) ** 2 <= 64] = (200, 200, 200)
    return image


def parse_params(text: str | None) -> dict[str, Any]:
    """Parse --params: inline JSON or @file; CliError 1006 on anything but a JSON object."""
    if text is None or text == "":
        return {}
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(INVALID_PARAMS, f"cannot read params file {path}: {exc}") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CliError(INVALID_PARAMS, f"--params is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CliError(INVALID_PARAMS, '--params must be a JSON object like {"threshold": 0.5}')
    return value


def dump_json(value: Any) -> str:
    """Render a value as indented JSON, keeping non-ASCII text readable (as procvision-runner)."""
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def print_json(value: Any) -> None:
    """Print a value as JSON on stdout."""
    sys.stdout.write(dump_json(value) + "\n")
    sys.stdout.flush()


def report_error(code: str, message: str, as_json: bool = False) -> int:
    """Print a refusal (`error <code>: <message>` on stderr, or a JSON object); return 1."""
    if as_json:
        print_json({"status": "ERROR", "error_code": code, "message": message})
    else:
        sys.stderr.write(f"error {code}: {message}\n")
        sys.stderr.flush()
    return 1


def progress(message: str) -> None:
    """Show a progress line on stderr, on a terminal or not (CI logs and pipes see it too)."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"... {message}\n")
        sys.stderr.flush()


def print_report(report: dict[str, Any]) -> None:
    """Print a validate report, one line per check, then the summary."""
    for check in report["checks"]:
        mark = f"[{check['result']}]" if check["result"] in (PASS, WARN) else "[FAIL]"
        code = f" ({check['code']})" if check.get("code") else ""
        where = f" at {check['where']}" if check.get("where") else ""
        print(f"{mark} {check['name']}{code}{where}: {check['message']}")
    summary = report["summary"]
    print(f"{summary['status']}: {summary['passed']} passed, {summary['failed']} failed")
