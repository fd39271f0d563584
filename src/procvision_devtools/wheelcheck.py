"""`package`'s last check: can the store install the zip offline from its wheels/ alone?"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from procvision_algorithm_sdk.errors import WHEELS_MISSING

from ._common import CliError
from ._requirements import SDK_PROJECT

__all__ = ["check_wheels"]


def check_wheels(
    requirements_text: str,
    sdk_requires: list[str],
    wheel_names: list[str],
    target: dict[str, Any],
    wheels_dir: Path | None = None,
) -> str | None:
    """Refuse wheels/ that cannot install the package offline (the check `validate --zip` runs).

    The SDK's own dependencies are checked too: the store's `pip install --no-index` needs them.
    CliError 2004 names every missing wheel (2003 when only the platform or Python is wrong);
    returns a note instead when the store's checks are not importable here.
    """
    try:
        from procvision_runner.store.closure import check_closure
        from procvision_runner.store.wheels import check_requirements

        from .zipvalidate import target_env
    except ModuleNotFoundError as exc:
        name = exc.name or ""
        if name != "procvision_runner" and name.split(".")[0] != "packaging":
            raise CliError(WHEELS_MISSING, f"cannot check wheels/: {exc}") from None
        return f"wheels/ not checked against requirements.txt (runner extra missing: {exc})"
    except ImportError as exc:  # a broken install must not let an uninstallable zip through
        raise CliError(WHEELS_MISSING, f"cannot check wheels/: {exc}") from None
    env = target_env(target)
    problems: list[str] = []
    codes: list[str] = []
    sdk_text = "".join(line + "\n" for line in sdk_requires)
    for text, needed_by in ((requirements_text, "requirements.txt"), (sdk_text, SDK_PROJECT)):
        for problem in check_requirements(text, wheel_names, env):
            problems.append(f"{problem.message} (needed by {needed_by})")
            codes.append(str(problem.code))
    if not problems and wheels_dir is not None:  # the resolver: every transitive dependency
        for problem in check_closure(requirements_text, wheels_dir, env):
            problems.append(problem.message)
            codes.append(str(problem.code))
    if problems:
        code = WHEELS_MISSING if WHEELS_MISSING in codes else codes[0]
        raise CliError(
            code,
            "the package could not be installed offline from its wheels/: "
            + "; ".join(problems)
            + " (put the wheels in <project>/wheels for -s, or let package download them)",
        )
    return None
