"""`procvision-cli init`: scaffold a project that passes `validate` and `run` as generated."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from string import Template
from typing import Any

from procvision_algorithm_sdk._version import __version__
from procvision_algorithm_sdk.contract import is_safe_name
from procvision_algorithm_sdk.errors import (
    INVALID_PARAMS,
    INVALID_PID,
    MANIFEST_MISSING,
    UNKNOWN_ERROR,
)
from procvision_algorithm_sdk.generation import EXECUTE_ONLY, LIFECYCLE

from ._common import CliError, print_json, report_error
from .init_execute_only import MAIN_TEMPLATE, TEST_TEMPLATE
from .init_names import (
    check_class,
    check_module,
    class_name_for,
    manifest_name_for,
    module_name_for,
    romanize,
)
from .init_target import choose_target, interactive

__all__ = [
    "add_parser",
    "class_name_for",
    "manifest_name_for",
    "module_name_for",
    "romanize",
    "scaffold",
]

_MAIN_TEMPLATE = Template('''\
"""The algorithm of this package: get_info, pre_execute and execute."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from procvision_algorithm_sdk import BaseAlgorithm, Session, read_image_from_shared_memory

# Name, version, description and pids live in manifest.json only (it sits beside this package,
# in the project and in the installed package alike): a version bump is one edit there.
MANIFEST: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "manifest.json").read_text(encoding="utf-8")
)
SUPPORTED_PIDS: list[str] = list(MANIFEST["supported_pids"])

STEPS: list[dict[str, Any]] = [
    {
        "index": 1,
        "name": "inspect",
        "params": [
            {
                "key": "threshold",
                "type": "float",
                "min": 0.0,
                "max": 255.0,
                "default": 20.0,
                "description": "minimum mean brightness of a good part",
            }
        ],
    }
]


class $class_name(BaseAlgorithm):
    """$class_name: one instance serves every supported pid."""

    def __init__(self) -> None:
        super().__init__()
        self._supported_pids = list(SUPPORTED_PIDS)

    def setup(self) -> None:
        # Load models and other heavy resources here: called once per worker process.
        self._resources_loaded = True

    def teardown(self) -> None:
        self._resources_loaded = False

    def get_info(self) -> dict[str, Any]:
        return {
            "name": MANIFEST["name"],
            "version": MANIFEST["version"],
            "description": MANIFEST.get("description", ""),
            "supported_pids": list(SUPPORTED_PIDS),
            "steps": STEPS,
        }

    def pre_execute(
        self,
        step_index: int,
        pid: str,
        session: Session,
        user_params: dict[str, Any],
        shared_mem_id: str,
        image_meta: dict[str, Any],
    ) -> dict[str, Any]:
        if pid not in SUPPORTED_PIDS:
            return {"status": "ERROR", "message": f"unsupported pid {pid}", "error_code": "1001"}
        image = read_image_from_shared_memory(shared_mem_id, image_meta)
        if image is None:
            return {"status": "ERROR", "message": "no image", "error_code": "1002"}
        # >>> Write your preparation here (calibration, reference checks). <<<
        return {"status": "OK", "message": "ready", "data": {"calibration_rects": []}}

    def execute(
        self,
        step_index: int,
        pid: str,
        session: Session,
        user_params: dict[str, Any],
        shared_mem_id: str,
        image_meta: dict[str, Any],
    ) -> dict[str, Any]:
        # The array is valid only during this call: the Runner reuses its shared memory for
        # later frames. Copy what you keep beyond the call: self.reference = image.copy()
        image = read_image_from_shared_memory(shared_mem_id, image_meta)
        if image is None:
            return {"status": "ERROR", "message": "no image", "error_code": "1002"}
        height, width = int(image.shape[0]), int(image.shape[1])
        # >>> Write your algorithm here. Return plain Python values (int, float, str). <<<
        brightness = float(np.mean(image))
        threshold = float(user_params.get("threshold", 20.0))
        whole = {"x": 0, "y": 0, "width": width, "height": height}
        if brightness >= threshold:
            return {
                "status": "OK",
                "message": "",
                "data": {
                    "result_status": "OK",
                    "defect_rects": [],
                    "position_rects": [dict(whole, label="part", score=1.0)],
                    "debug": {"brightness": round(brightness, 2)},
                },
            }
        return {
            "status": "OK",
            "message": "",
            "data": {
                "result_status": "NG",
                "ng_reason": "part too dark",
                "defect_rects": [dict(whole, label="dark", score=1.0)],
                "debug": {"brightness": round(brightness, 2)},
            },
        }
''')

_TEST_TEMPLATE = Template('''\
"""A first test of the algorithm: run step 1 on a synthetic image through shared memory."""

import sys
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from procvision_algorithm_sdk import Session, write_image_array_to_shared_memory  # noqa: E402
from procvision_algorithm_sdk.shared_memory import dev_clear_shared_memory  # noqa: E402

from $module.main import SUPPORTED_PIDS, $class_name  # noqa: E402


def test_step_1_gives_a_verdict() -> None:
    algorithm = $class_name()
    algorithm.setup()
    shm_id = f"test-{uuid.uuid4().hex[:8]}"
    meta = write_image_array_to_shared_memory(shm_id, np.full((120, 160, 3), 128, np.uint8))
    try:
        session = Session("test-session")
        pre = algorithm.pre_execute(1, SUPPORTED_PIDS[0], session, {}, shm_id, meta)
        assert pre["status"] == "OK"
        result = algorithm.execute(1, SUPPORTED_PIDS[0], session, {"threshold": 20.0}, shm_id, meta)
        assert result["status"] == "OK"
        assert result["data"]["result_status"] == "OK"
    finally:
        dev_clear_shared_memory(shm_id)
        algorithm.teardown()
''')


def scaffold(
    name: str,
    directory: Path | None = None,
    pids: list[str] | None = None,
    version: str = "1.0.0",
    description: str | None = None,
    force: bool = False,
    api: str = LIFECYCLE,
    *,
    module: str | None = None,
    class_name: str | None = None,
    target: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Create the project files; return what was written. CliError on bad input or overwrite.

    `module` / `class_name` replace the names derived from `name`; `target` is the station's
    `.procvision_env.json` (default: init_target.choose_target's guess).
    """
    if not name.strip():
        raise CliError(MANIFEST_MISSING, "the algorithm name must not be empty")
    pids = pids or ["p001"]
    for pid in pids:
        if not is_safe_name(pid):
            raise CliError(
                INVALID_PID,
                f"pid {pid!r} is not a safe name (letters, digits, '.', '_', '-'; <= 64 chars)",
            )
    if len(set(pids)) != len(pids):
        raise CliError(INVALID_PID, "--pids lists a pid twice")
    if not is_safe_name(version):
        raise CliError(INVALID_PARAMS, f"version {version!r} is not a safe name (like 1.0.0)")
    manifest_name = manifest_name_for(name)
    module = check_module(module) if module is not None else module_name_for(name)
    class_name = check_class(class_name) if class_name is not None else class_name_for(module)
    root = Path(directory) if directory else Path.cwd() / manifest_name
    desc = description if description is not None else name
    manifest = {
        "name": manifest_name,
        "version": version,
        "entry_point": f"{module}.main:{class_name}",
        "description": desc,
        "display_name": name,
        "supported_pids": pids,
        # package ships the project folder less .gitignore'd files and these patterns
        "package": {"exclude": ["tests/"]},
    }
    if api == EXECUTE_ONLY:
        del manifest["supported_pids"]  # the pids are whatever activate binds
    literals = {
        "name": repr(manifest_name),
        "version": repr(version),
        "display_name": repr(name),
        "description": repr(desc),
        "pids": repr(list(pids)),
        "class_name": class_name,
        "module": module,
    }
    files: dict[str, str] = {
        "manifest.json": json.dumps(manifest, ensure_ascii=False, indent=2) + "\n",
        f"{module}/__init__.py": f'"""Algorithm package {manifest_name}."""\n',
        f"{module}/main.py": (MAIN_TEMPLATE if api == EXECUTE_ONLY else _MAIN_TEMPLATE).substitute(
            literals
        ),
        "requirements.txt": (
            "# Runtime dependencies of the algorithm, one per line; pin versions for delivery.\n"
            "# `procvision-cli package` adds the SDK itself and downloads everything as wheels.\n"
            "numpy>=1.23\n"
        ),
        ".procvision_env.json": json.dumps(target or choose_target(None, None)[0], indent=2) + "\n",
        "tests/test_algorithm.py": (
            TEST_TEMPLATE if api == EXECUTE_ONLY else _TEST_TEMPLATE
        ).substitute(literals),
        ".gitignore": "__pycache__/\n*.pyc\n*.zip\n.venv/\nwheels/\n",
    }
    _write_files(root, files, force)
    return {
        "project": str(root),
        "name": manifest_name,
        "module": module,
        "entry_point": manifest["entry_point"],
        "files": sorted(files),
        "sdk_version": __version__,
    }


def _write_files(root: Path, files: dict[str, str], force: bool) -> None:
    """Write the project's files under `root` (refusing to overwrite without `force`)."""
    if root.exists() and not root.is_dir():
        raise CliError(UNKNOWN_ERROR, f"cannot create the project in {root}: not a directory")
    existing = [rel for rel in files if (root / rel).exists()]
    if existing and not force:
        raise CliError(
            MANIFEST_MISSING,
            f"{root} already has {', '.join(existing)}; use --force to overwrite",
        )
    for rel, text in files.items():
        path = root / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            # No error code fits a refusing filesystem; 9999 (unknown_error) says so.
            where = exc.filename or path
            raise CliError(
                UNKNOWN_ERROR,
                f"cannot create the project in {root}: {where}: {exc.strerror or exc} "
                "(the filesystem refused the write; choose another -d directory)",
            ) from None


def add_parser(subparsers: Any) -> None:
    """Register the init command."""
    parser = subparsers.add_parser(
        "init",
        help="create a new algorithm project",
        description="Create a project (manifest, package with main.py, requirements.txt, "
        ".procvision_env.json, a test) that passes `validate` and `run` as generated.",
    )
    parser.add_argument("name", help="algorithm name (any text; a safe name is derived)")
    parser.add_argument("-d", "--dir", help="project directory (default: ./<safe name>)")
    parser.add_argument("--pids", default="p001", help="comma-separated supported pids")
    parser.add_argument(
        "--api",
        choices=[LIFECYCLE, EXECUTE_ONLY],
        default=LIFECYCLE,
        help="lifecycle (get_info, pre_execute, execute) or execute-only (SDK 0.3.x execute on "
        "decoded current and guide images; no pids)",
    )
    parser.add_argument("-v", "--version", dest="algo_version", default="1.0.0")
    parser.add_argument("-e", "--description", default=None)
    parser.add_argument("--module", help="the Python package's name (default: from the name)")
    parser.add_argument(
        "--class", dest="class_name", help="the algorithm class's name (default: from --module)"
    )
    parser.add_argument(
        "--target",
        help="the station's platform: linux_x86_64 (glibc 2.28+), linux_aarch64, win_amd64, "
        "win32, macos_arm64, or a wheel platform tag like manylinux2014_x86_64 (asked on a TTY)",
    )
    parser.add_argument(
        "--python-version", help="the station's Python version, like 3.10 (asked on a TTY)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    parser.add_argument("--json", action="store_true", help="print what was created as JSON")
    parser.set_defaults(handler=_command)


def _command(args: argparse.Namespace) -> int:
    try:
        return _init(args)
    except CliError as exc:
        return report_error(exc.code, exc.message, args.json)


def _init(args: argparse.Namespace) -> int:
    pids = [p.strip() for p in args.pids.split(",") if p.strip()]
    ask = input if not args.json and interactive() else None
    target, note = choose_target(args.target, args.python_version, ask)
    created = scaffold(
        args.name,
        Path(args.dir) if args.dir else None,
        pids,
        args.algo_version,
        args.description,
        args.force,
        args.api,
        module=args.module,
        class_name=args.class_name,
        target=target,
    )
    created["target"] = target
    if note:
        created["notes"] = [note]
    if args.json:
        print_json(created)
        return 0
    print(f"created {created['project']} (name {created['name']}, {created['entry_point']})")
    for rel in created["files"]:
        print(f"  {rel}")
    target = created["target"]
    print(f"  station: {target['wheels_platform']}, Python {target['python_version']}")
    for line in created.get("notes", []):
        print(f"  note: {line}")
    print(f"next: edit {created['module']}/main.py, then")
    print(f"  procvision-cli validate {created['project']}")
    return 0
