"""What quick and full validate both check of a project: its manifest, get_info and assets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from procvision_algorithm_sdk.contract import Problem, check_info, check_manifest, legacy_step_zero
from procvision_algorithm_sdk.contract.manifest_keys import misspelled_keys
from procvision_algorithm_sdk.errors import MANIFEST_MISSING, MODEL_NOT_FOUND

from ._common import CliError, Report, load_manifest
from ._loader import project_top_level
from .smoke import sample_params, step_indexes

__all__ = ["check_against_info", "check_assets", "read_project", "sample_params", "step_indexes"]


def read_project(
    project: Path, manifest_path: str | os.PathLike[str] | None, report: Report
) -> dict[str, Any] | None:
    """Load and check the manifest; return it when the entry point is usable, else None."""
    if not project.is_dir():
        report.fail("project", f"project directory not found: {project}", MANIFEST_MISSING)
        return None
    try:
        manifest = load_manifest(project, manifest_path)
    except CliError as exc:
        report.fail("manifest", exc.message, exc.code, "manifest")
        return None
    report.problems(
        "manifest", check_manifest(manifest), "manifest.json fields and types are valid"
    )
    for problem in legacy_step_zero(manifest, "manifest"):
        report.warn("step numbering", problem)
    for problem in misspelled_keys(manifest):
        report.warn("manifest keys", problem)
    if not isinstance(manifest, dict) or project_top_level(manifest.get("entry_point")) is None:
        report.fail(
            "entry import",
            "not attempted: manifest.entry_point is missing or malformed",
            MANIFEST_MISSING,
            "manifest.entry_point",
        )
        return None
    return manifest


def check_against_info(manifest: dict[str, Any], info: Any, report: Report) -> bool:
    """Record the get_info, step-schema and agreement checks; return whether info is usable."""
    info_problems = check_info(info)
    step_problems = [p for p in info_problems if p.where.startswith("info.steps")]
    other = [p for p in info_problems if p not in step_problems]
    report.problems("get_info", other, "get_info() returns name, version, supported_pids, steps")
    report.problems("step schemas", step_problems, "steps and parameter schemas are valid")
    alone = set(check_manifest(manifest))
    agreement = [p for p in check_manifest(manifest, info) if p not in alone]
    report.problems(
        "manifest/get_info agreement",
        agreement,
        "name, version and supported_pids agree with get_info()",
    )
    return isinstance(info, dict) and not other


def check_assets(project: Path, manifest: dict[str, Any], report: Report) -> None:
    """Every required asset file must exist inside the project."""
    assets = manifest.get("required_assets")
    if not isinstance(assets, dict) or not assets:
        report.ok("required assets", "no required_assets declared")
        return
    root = project.resolve()
    problems: list[Problem] = []
    count = 0
    for pid, kinds in assets.items():
        if not isinstance(kinds, dict):
            continue
        for kind, rel in kinds.items():
            if not isinstance(rel, str) or not rel:
                continue
            where = f"manifest.required_assets.{pid}.{kind}"
            target = (root / rel).resolve()
            if not target.is_relative_to(root):
                problems.append(Problem(where, MANIFEST_MISSING, f"{rel!r} is outside the project"))
            elif not target.is_file():
                problems.append(
                    Problem(where, MODEL_NOT_FOUND, f"asset {rel!r} (pid {pid}, {kind}) not found")
                )
            else:
                count += 1
    report.problems("required assets", problems, f"{count} asset file(s) present")
