"""The command lines start light: a command imports only what it needs (issue 14, CI time).

Each case runs the real command in a fresh interpreter and reads `sys.modules` at its end, never
a clock: `procvision-runner --help` and `list`, `procvision-cli --help` and `init` must not load
numpy, the Runner, the HTTP service, signing or the pinyin tables. The lazy re-exports that made
this possible must still hand out the very objects their home modules define.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Runs `main(argv)` of one CLI, then writes the names of the loaded modules to a file.
_PROBE = """
import contextlib, io, json, sys
cli, out, *argv = sys.argv[1:]
if cli == "runner":
    from procvision_runner.cli import main
else:
    from procvision_devtools.main import main
stdout = io.StringIO()
try:
    with contextlib.redirect_stdout(stdout):
        code = main(argv)
except SystemExit as exc:
    code = exc.code
with open(out, "w", encoding="utf-8") as f:
    json.dump({"code": code, "stdout": stdout.getvalue(), "modules": sorted(sys.modules)}, f)
"""

# What no light command may load (each costs tenths of a CPU-second or more at start-up).
HEAVY = (
    "numpy",
    "PIL",
    "cryptography",
    "fastapi",
    "uvicorn",
    "httpx",
    "pypinyin",
    "pathspec",
    "procvision_runner.runner",
    "procvision_runner.pool",
    "procvision_runner.worker",
    "procvision_runner.client",
    "procvision_runner.service",
    "procvision_runner.store.closure",
    "procvision_runner.store.wheels",
    "procvision_algorithm_sdk.shared_memory",
    "procvision_algorithm_sdk.segment",
    "procvision_algorithm_sdk.adapter.loop",
)


def _run(tmp_path: Path, cli: str, *argv: str) -> dict:
    out = tmp_path / "probe.json"
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, cli, str(out), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict = json.loads(out.read_text(encoding="utf-8"))
    return result


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in HEAVY if m in modules]


@pytest.mark.parametrize(
    ("cli", "argv", "shows"),
    [
        ("runner", ["--help"], "install"),
        ("runner", ["install", "--help"], "--replace"),
        ("runner", ["--version"], ""),
        ("dev", ["--help"], "package"),
        ("dev", ["package", "--help"], "--platform"),
        ("dev", ["bench", "--help"], "bench"),
    ],
)
def test_help_and_version_load_nothing_heavy(
    tmp_path: Path, cli: str, argv: list[str], shows: str
) -> None:
    found = _run(tmp_path, cli, *argv)
    assert found["code"] == 0
    assert shows in found["stdout"]
    assert _heavy(found["modules"]) == []


def test_runner_list_reads_the_store_without_the_runner(tmp_path: Path) -> None:
    store = tmp_path / "store"
    found = _run(tmp_path, "runner", "--store", str(store), "list", "--json")
    assert found["code"] == 0
    assert json.loads(found["stdout"]) == {"packages": [], "active": {}}
    assert (store / "registry.json").exists() or (store / "zips").is_dir()  # it opened the store
    assert _heavy(found["modules"]) == []


def test_runner_refusal_from_the_store_loads_nothing_heavy(tmp_path: Path) -> None:
    """A change the store refuses (nothing bound) goes as far as the store, no further."""
    out = tmp_path / "probe.json"
    argv = ["--store", str(tmp_path / "s"), "deactivate", "--pid", "P1"]
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, "runner", str(out), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    found = json.loads(out.read_text(encoding="utf-8"))
    assert found["code"] == 1
    assert "error 1001" in proc.stderr  # the pid is not bound: refused with its code
    assert _heavy(found["modules"]) == []


def test_dev_init_scaffolds_without_numpy_or_pinyin(tmp_path: Path) -> None:
    found = _run(tmp_path, "dev", "init", "screw check", "-d", str(tmp_path / "proj"))
    assert found["code"] == 0
    manifest = json.loads((tmp_path / "proj" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["name"].startswith("screw-check-")  # ASCII: no pinyin tables needed
    assert _heavy(found["modules"]) == []


@pytest.mark.slow
def test_dev_init_of_a_chinese_name_still_spells_it_in_pinyin(tmp_path: Path) -> None:
    pytest.importorskip("pypinyin")  # an optional extra: without it the slug is a hash
    found = _run(tmp_path, "dev", "init", "产线检测", "-d", str(tmp_path / "proj"))
    assert found["code"] == 0
    manifest = json.loads((tmp_path / "proj" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["name"].startswith("chan-xian-jian-ce-")


_CONTRACT_WITHOUT_NUMPY = """
import json, sys
from procvision_algorithm_sdk.contract import find_unjsonable, to_jsonable, check_rect
loaded_at_import = "numpy" in sys.modules
plain = find_unjsonable({"a": [1, 2.5, None, "x"]}, "data")
bad = [p.code for p in find_unjsonable({"a": {1, 2}, "b": float("nan")}, "data")]
converted = to_jsonable({"t": (1, 2)})
import numpy as np
found = find_unjsonable({"n": np.float32(1.5), "arr": np.zeros(2)}, "data")
print(json.dumps({
    "loaded_at_import": loaded_at_import,
    "plain": len(plain),
    "bad": bad,
    "converted": converted,
    "numpy_messages": [p.message for p in found],
    "to_jsonable_numpy": to_jsonable({"n": np.int64(3), "f": np.float64(0.5)}),
    "rect_numpy": bool(check_rect({"x": np.float64(1), "y": 0, "width": 1, "height": 1}, "r")),
}))
"""


def test_the_contract_checks_load_numpy_only_when_a_value_needs_it() -> None:
    """No numpy value exists before numpy is imported; once it is, numpy values are caught."""
    proc = subprocess.run(
        [sys.executable, "-c", _CONTRACT_WITHOUT_NUMPY],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["loaded_at_import"] is False
    assert got["plain"] == 0
    assert got["bad"] == ["1008", "1008"]
    assert got["converted"] == {"t": [1, 2]}
    assert any("numpy.float32" in m and "float()" in m for m in got["numpy_messages"])
    assert any("numpy.ndarray" in m for m in got["numpy_messages"])
    assert got["to_jsonable_numpy"] == {"n": 3, "f": 0.5}
    assert got["rect_numpy"] is True  # a numpy coordinate is a problem, as before


def test_the_lazy_re_exports_are_the_objects_of_their_home_modules() -> None:
    import procvision_algorithm_sdk
    import procvision_algorithm_sdk.adapter as adapter
    import procvision_runner
    import procvision_runner.cli as runner_cli
    import procvision_runner.store as store
    from procvision_algorithm_sdk import shared_memory
    from procvision_algorithm_sdk.adapter import calls, entry, loop
    from procvision_runner import calls as runner_calls
    from procvision_runner import results, runner
    from procvision_runner.store import layout, manager, opening, progress

    assert procvision_runner.Runner is runner.Runner
    assert procvision_runner.PackageKey is runner_calls.PackageKey
    assert procvision_runner.CallRecord is results.CallRecord
    assert store.PackageManager is manager.PackageManager
    assert store.StoreConfig is manager.StoreConfig
    assert store.PackageStore is layout.PackageStore
    assert store.default_root is layout.default_root
    assert runner_cli.load_config is opening.load_configs
    assert runner_cli.configs_from is opening.configs_from
    assert runner_cli.open_manager is opening.open_manager
    assert runner_cli.print_progress is progress.print_progress
    assert (
        procvision_algorithm_sdk.read_image_from_shared_memory
        is shared_memory.read_image_from_shared_memory
    )
    assert adapter.main is entry.main
    assert adapter.CallHandler is calls.CallHandler
    assert adapter.WorkerLoop is loop.WorkerLoop
    for module in (procvision_algorithm_sdk, adapter, procvision_runner, store):
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{module.__name__}.{name}"
    for module in (procvision_algorithm_sdk, adapter, procvision_runner, store, runner_cli):
        with pytest.raises(AttributeError):
            module.no_such_name  # noqa: B018
