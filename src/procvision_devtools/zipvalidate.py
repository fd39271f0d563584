"""`validate --zip`: an offline package checked on its own with the store's own checks."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from procvision_algorithm_sdk.errors import INVALID_ZIP

from ._common import Report
from ._target import expand_platforms


def target_env(env: dict[str, Any] | None) -> Any:
    """The interpreter the package declares (.procvision_env.json), else this one."""
    from procvision_runner.store.wheels import TargetEnv

    current = TargetEnv.current()
    if not env:
        return current
    declared = TargetEnv.from_env_json(env, fallback=current)
    platforms: list[str] = []
    for tag in declared.platforms:
        platforms.extend(expand_platforms(tag))
    return dataclasses.replace(declared, platforms=tuple(dict.fromkeys(platforms)), tags=None)


def validate_zip(zip_path: Path, report: Report) -> None:
    """Layout, manifest, requirements resolvable from wheels/, checksums and signature."""
    try:
        from procvision_runner.store.closure import check_closure_in_zip
        from procvision_runner.store.signing import verify_package
        from procvision_runner.store.wheels import check_env_file, check_requirements
        from procvision_runner.store.zipcheck import check_zip
    except ImportError as exc:
        report.fail(
            "zip",
            f"--zip needs the runner extra (pip install procvision-runner): {exc}",
            INVALID_ZIP,
        )
        return
    layout, problems = check_zip(zip_path)
    if layout is None:
        report.problems("zip layout", problems, "")
        return
    shape = "flat" if not layout.prefix else f"under one top folder {layout.prefix!r}"
    if layout.wheels_beside:
        shape += " with wheels/ beside it (the original tool's layout)"
    if layout.requirements_file != "requirements.txt":
        shape += f", installs {layout.requirements_file}"
    report.ok(
        "zip layout",
        f"{len(layout.files)} files ({shape}), {len(layout.wheels)} wheels, manifest "
        f"{layout.name} {layout.version}",
    )
    try:
        target = target_env(layout.env)
    except Exception as exc:  # an env file naming an impossible interpreter
        report.fail(
            "target", f".procvision_env.json does not describe a target: {exc}", INVALID_ZIP
        )
        return
    report.problems(
        "target environment",
        check_env_file(layout.env, target),
        f"target {target.describe()}" + ("" if layout.env else " (no .procvision_env.json)"),
    )
    req_problems = check_requirements(layout.requirements, layout.wheels, target)
    report.problems(
        "requirements from wheels",
        req_problems,
        "every requirement resolves from wheels/ for the target",
    )
    if not req_problems:
        closure = check_closure_in_zip(
            zip_path, layout.members, layout.wheels, layout.requirements, target
        )
        report.problems(
            "dependency closure",
            closure,
            "uv or pip resolves every transitive dependency from wheels/ for the target",
        )
    if not layout.has_checksums:
        report.ok("checksums", "no checksums.sha256 (optional)")
        return
    # The signature can only be checked against a station's trusted keys; here the checksums.
    unsigned = dataclasses.replace(layout, has_signature=False)
    with tempfile.TemporaryDirectory(prefix="pv-no-keys-") as empty:
        _, sum_problems = verify_package(zip_path, unsigned, Path(empty), "lenient")
    note = ", SIGNATURE present" if layout.has_signature else ""
    report.problems("checksums", sum_problems, f"checksums.sha256 matches every file{note}")
