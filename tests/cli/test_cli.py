"""procvision-cli through the real console script and through its Python API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from algos.cli.broken import CASES, MANIFEST, write_project
from PIL import Image

from procvision_algorithm_sdk.contract import is_safe_name
from procvision_devtools import main, run, validate
from procvision_devtools._common import CliError
from procvision_devtools._requirements import normalise
from procvision_devtools.init import manifest_name_for, module_name_for

REPO = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "procvision-cli"
SEED_STYLE = Path(__file__).resolve().parents[1] / "algos" / "cli" / "seed_style.py"
CHINESE_NAME = '产线 "A" 检测'


def cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed console script."""
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False
    )


def write_image(path: Path, value: int = 120, size: tuple[int, int] = (320, 240)) -> Path:
    """Write a flat RGB image in the format of the suffix."""
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)
    return path


@pytest.fixture(scope="session")
def wheel_cache() -> Path:
    """numpy and Pillow wheels downloaded once per checkout (gitignored .cache/wheels)."""
    cache = REPO / ".cache" / "wheels"
    cache.mkdir(parents=True, exist_ok=True)
    return cache


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project `init` generated once per module, with a Chinese, quoted name (only copied)."""
    target = tmp_path_factory.mktemp("generated") / "proj"
    result = cli("init", CHINESE_NAME, "-d", str(target), "--pids", "p001,p002")
    assert result.returncode == 0, result.stderr
    return target


@pytest.fixture
def project(generated: Path, tmp_path: Path) -> Path:
    """A freshly generated project of its own (a copy: init writes no path into its files)."""
    return Path(shutil.copytree(generated, tmp_path / "proj"))


@pytest.fixture
def seed_project(tmp_path: Path) -> Path:
    """The seed era's example algorithm, unchanged, as a project."""
    root = tmp_path / "seed"
    (root / "algorithm_example").mkdir(parents=True)
    (root / "algorithm_example" / "__init__.py").write_text("", encoding="utf-8")
    shutil.copyfile(SEED_STYLE, root / "algorithm_example" / "main.py")
    manifest = {
        "name": "algorithm-example",
        "version": "1.0",
        "entry_point": "algorithm_example.main:AlgorithmExample",
        "description": "seed example",
        "supported_pids": ["A01", "A02"],
    }
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


def failures(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in report["checks"] if c["result"] == "FAIL"]


# ---------------------------------------------------------------------------------------------
# entry points and usage


def test_no_subcommand_prints_help_and_exits_2() -> None:
    result = cli()
    assert result.returncode == 2
    assert "validate" in result.stderr and "package" in result.stderr


def test_python_dash_m_works_and_usage_errors_exit_2() -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "procvision_devtools", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0 and "bench" in ok.stdout
    bad = cli("run", "somewhere")  # --pid and --image missing
    assert bad.returncode == 2
    assert "required" in bad.stderr
    assert main([]) == 2


# ---------------------------------------------------------------------------------------------
# init


@pytest.mark.slow
def test_init_names_become_safe_and_code_stays_valid(tmp_path: Path) -> None:
    for name in (CHINESE_NAME, 'it\'s "x"\\n', "123 go", "class", "numpy", "ok-name"):
        assert is_safe_name(manifest_name_for(name))
        module = module_name_for(name)
        assert module.isidentifier() and module not in ("class", "numpy")
    assert manifest_name_for("ok-name") == "ok-name"
    target = tmp_path / "weird"
    desc = "line \"one\"\nline 'two' \\ 产线"
    result = cli("init", CHINESE_NAME, "-d", str(target), "-e", desc, "-v", "2.1.0", "--json")
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["description"] == desc and manifest["display_name"] == CHINESE_NAME
    assert manifest["version"] == "2.1.0" and is_safe_name(manifest["name"])
    assert (target / ".procvision_env.json").is_file()
    assert (target / "requirements.txt").is_file()
    assert "Write your algorithm here" in (target / created["module"] / "main.py").read_text(
        encoding="utf-8"
    )
    report = validate(target)
    assert report["summary"]["status"] == "PASS", failures(report)
    # the generated test runs green too, under pytest alone: this venv's plugins (hypothesis,
    # schemathesis, xdist, ...) are no part of a new project and cost 5 CPU-s to load
    test = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(target / "tests")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=target,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert test.returncode == 0, test.stdout + test.stderr


@pytest.mark.slow
def test_init_refuses_to_overwrite_without_force(project: Path) -> None:
    main_files = list(project.glob("*/main.py"))
    main_files[0].write_text("# my work\n", encoding="utf-8")
    again = cli("init", CHINESE_NAME, "-d", str(project))
    assert again.returncode == 1
    assert "--force" in again.stderr
    assert main_files[0].read_text(encoding="utf-8") == "# my work\n"
    forced = cli("init", CHINESE_NAME, "-d", str(project), "--force")
    assert forced.returncode == 0
    assert "Write your algorithm here" in main_files[0].read_text(encoding="utf-8")
    bad_pid = cli("init", "x", "-d", str(project / "other"), "--pids", "ok,../bad")
    assert bad_pid.returncode == 1 and "1001" in bad_pid.stderr


# ---------------------------------------------------------------------------------------------
# validate


@pytest.mark.slow
def test_validate_console_script_human_and_json(project: Path) -> None:
    human = cli("validate", str(project))
    assert human.returncode == 0, human.stdout
    assert "[PASS] step 1 execute" in human.stdout
    assert human.stdout.strip().splitlines()[-1].startswith("PASS")
    as_json = cli("validate", str(project), "--json")
    report = json.loads(as_json.stdout)
    assert report["summary"]["status"] == "PASS"
    assert report["summary"]["failed"] == 0
    assert {c["name"] for c in report["checks"]} >= {
        "manifest",
        "entry import",
        "get_info",
        "manifest/get_info agreement",
        "step 1 execute",
    }


@pytest.mark.parametrize(
    ("case", "kwargs", "check", "code", "fragment"), CASES, ids=[c[0] for c in CASES]
)
def test_each_broken_rule_fails_validate_naming_it(
    tmp_path: Path, case: str, kwargs: dict[str, Any], check: str, code: str, fragment: str
) -> None:
    root = write_project(tmp_path / case, **kwargs)
    report = validate(root)
    assert report["summary"]["status"] == "FAIL"
    hits = [
        c
        for c in failures(report)
        if c["name"] == check
        and c.get("code") == code
        and (fragment in c.get("where", "") or fragment in c["message"])
    ]
    assert hits, failures(report)


def test_validate_refuses_a_name_of_65_characters_and_takes_64(tmp_path: Path) -> None:
    # the one safe-name rule (contract.is_safe_name), as the service applies it too
    for field in ("name", "version"):
        refused = validate(
            write_project(tmp_path / f"{field}65", dict(MANIFEST, **{field: "a" * 65}))
        )
        assert refused["summary"]["status"] == "FAIL"
        hits = [
            c
            for c in failures(refused)
            if c["name"] == "manifest" and c["code"] == "2002" and "at most 64" in c["message"]
        ]
        assert hits, failures(refused)
        taken = validate(
            write_project(tmp_path / f"{field}64", dict(MANIFEST, **{field: "a" * 64}))
        )
        assert [c for c in failures(taken) if c["name"] == "manifest"] == [], failures(taken)


@pytest.mark.slow
def test_broken_rules_fail_through_the_console_script_with_exit_1(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", execute='{"status": "NG", "data": {}}')
    result = cli("validate", str(root))
    assert result.returncode == 1
    assert "[FAIL] step 1 execute (1008) at status" in result.stdout
    clean = write_project(tmp_path / "clean")
    assert cli("validate", str(clean)).returncode == 0


def test_validate_never_raises_on_bad_input(tmp_path: Path) -> None:
    for project in (tmp_path / "missing", tmp_path):
        report = validate(project)
        assert report["summary"]["status"] == "FAIL"
        assert failures(report)[0]["code"] == "2002"
    result = cli("validate", str(tmp_path / "missing"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    bad_zip = tmp_path / "bad.zip"
    bad_zip.write_bytes(b"not a zip")
    report = validate(zip_path=bad_zip)
    assert report["summary"]["status"] == "FAIL" and failures(report)[0]["code"] == "2001"


def test_validating_twice_in_one_process_imports_fresh_code(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p")
    assert validate(root)["summary"]["status"] == "PASS"
    write_project(root, execute='{"status": "NG", "data": {}}')  # same second, same size-ish
    second = validate(root)
    assert second["summary"]["status"] == "FAIL"
    write_project(root)
    assert validate(root)["summary"]["status"] == "PASS"
    assert str(root.resolve()) not in sys.path
    assert "broken_algo" not in sys.modules


@pytest.mark.slow
def test_seed_style_algorithm_validates_and_runs(seed_project: Path, tmp_path: Path) -> None:
    report = validate(seed_project)
    assert report["summary"]["status"] == "PASS", failures(report)
    full = cli("validate", str(seed_project), "--full", "--json")
    assert json.loads(full.stdout)["summary"]["status"] == "PASS", full.stdout
    image = write_image(tmp_path / "frame.jpg")
    out = run(seed_project, "A01", image)
    assert out["pre_execute"]["status"] == "OK"
    assert out["pre_execute"]["debug"] == {"latency_ms": 0.0}
    assert out["execute"]["data"]["result_status"] == "NG"
    assert out["execute"]["data"]["ng_reason"] == "scratch found"


@pytest.mark.slow
def test_validate_full_catches_contract_breaks_and_passes_clean(tmp_path: Path) -> None:
    clean = write_project(
        tmp_path / "clean",
        prelude="print('noise on stdout at import')",
        setup="print('noise in setup')",
    )
    report = json.loads(cli("validate", str(clean), "--full", "--json").stdout)
    assert report["summary"]["status"] == "PASS", failures(report)
    names = {c["name"] for c in report["checks"]}
    assert {"protocol hello", "stdout clean", "hook counts", "worker exit"} <= names
    broken = write_project(tmp_path / "broken", execute=CASES[19][1]["execute"])
    result = cli("validate", str(broken), "--full", "--json")
    assert result.returncode == 1
    fails = failures(json.loads(result.stdout))
    assert any(c["name"] == "step 1 execute" and c.get("code") == "1007" for c in fails), fails


# ---------------------------------------------------------------------------------------------
# run and overlay


@pytest.mark.slow
def test_run_console_script_exit_codes_and_errors(project: Path, tmp_path: Path) -> None:
    bright = write_image(tmp_path / "bright.png", 120)
    dark = write_image(tmp_path / "dark.bmp", 5)
    ok = cli("run", str(project), "--pid", "p002", "--image", str(bright))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "verdict: OK" in ok.stdout and "total" in ok.stdout
    ng = cli("run", str(project), "--pid", "p001", "--image", str(dark), "--json")
    assert ng.returncode == 0  # an NG verdict is still a successful call
    (result,) = json.loads(ng.stdout)["steps"]
    assert result["execute"]["data"]["result_status"] == "NG"
    assert result["execute"]["timings"]["total_ms"] >= 0
    bad_pid = cli("run", str(project), "--pid", "nope", "--image", str(bright))
    assert bad_pid.returncode == 1
    assert bad_pid.stderr.startswith("error 1001: ") and "p001" in bad_pid.stderr
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG not really")
    bad_image = cli("run", str(project), "--pid", "p001", "--image", str(junk))
    assert bad_image.returncode == 1 and "error 1002: " in bad_image.stderr
    params_file = tmp_path / "params.json"
    params_file.write_text('{"threshold": 999}', encoding="utf-8")
    bad_params = cli(
        "run",
        str(project),
        "--pid",
        "p001",
        "--image",
        str(bright),
        "--params",
        f"@{params_file}",
        "--json",
    )
    assert bad_params.returncode == 1
    assert json.loads(bad_params.stdout)["steps"][0]["pre_execute"]["error_code"] == "1006"
    not_json = cli("run", str(project), "--pid", "p001", "--image", str(bright), "--params", "{x")
    assert not_json.returncode == 1 and not_json.stderr.startswith("error 1006: ")


def test_run_python_api_never_raises(project: Path, tmp_path: Path) -> None:
    image = write_image(tmp_path / "i.png")
    out = run(project, "p001", image, '{"threshold": 10}')
    assert out["execute"]["status"] == "OK"
    assert run(tmp_path / "missing", "p001", image)["pre_execute"]["error_code"] == "2002"
    assert run(project, "zzz", image)["pre_execute"]["error_code"] == "1001"
    assert run(project, "p001", tmp_path / "none.png")["pre_execute"]["error_code"] == "1002"
    assert run(project, "p001", image, "[1]")["pre_execute"]["error_code"] == "1006"


@pytest.mark.slow
def test_all_steps_session_and_overlay_colours(seed_project: Path, tmp_path: Path) -> None:
    image = write_image(tmp_path / "frame.png", 30, (400, 300))
    overlay = tmp_path / "overlay.png"
    result = cli(
        "run",
        str(seed_project),
        "--pid",
        "A02",
        "--image",
        str(image),
        "--all-steps",
        "--session",
        "s-42",
        "--json",
        "--save-overlay",
        str(overlay),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    steps = json.loads(result.stdout)["steps"]
    assert [s["step_index"] for s in steps] == [1, 2]
    drawn = np.asarray(Image.open(overlay).convert("RGB"))
    drawn = drawn[drawn.shape[0] - 300 :]  # the image, under the verdict banner
    defect = steps[0]["execute"]["data"]["defect_rects"][0]
    assert tuple(drawn[defect["y"] + 20, defect["x"]]) == (255, 0, 0)  # defect: red
    assert tuple(drawn[150, 0]) == (0, 200, 0)  # step 2 position rect (whole image): green
    calib = steps[1]["pre_execute"]["data"]["calibration_rects"][0]
    # calibration: blue. The random defect rect and its label are drawn later and may cover
    # part of the outline (a 40 x 40 rect and a label line never all four 50-pixel sides).
    x, y, w, h = (calib[k] for k in ("x", "y", "width", "height"))
    outline = [drawn[y, i] for i in range(x, x + w)] + [
        drawn[y + h - 1, i] for i in range(x, x + w)
    ]
    outline += [drawn[j, x] for j in range(y, y + h)] + [
        drawn[j, x + w - 1] for j in range(y, y + h)
    ]
    blue = sum(tuple(p) == (0, 80, 255) for p in outline)
    assert blue >= w, f"{blue} blue pixels on the calibration rect's outline"


# ---------------------------------------------------------------------------------------------
# package and validate --zip


def test_requirements_normalisation() -> None:
    reqs = normalise(
        "# comment\nnumpy==1.26.4 \\\n    --hash=sha256:abc --hash sha256:def  # pinned\n"
        "--index-url https://example.invalid/simple\nPillow>=9 ; python_version >= '3.8'\n"
    )
    assert [r.line() for r in reqs.items] == [
        "numpy==1.26.4 --hash=sha256:abc --hash=sha256:def",
        "Pillow>=9 ; python_version >= '3.8'",
    ]
    assert reqs.hash_mode and reqs.notes
    for bad in (
        "-e .",
        "--editable ./x",
        "pkg @ file:///tmp/pkg",
        "file:///tmp/x.whl",
        "./local_pkg",
        "-r other.txt",
        "numpy\nnumpy>=2",
    ):
        with pytest.raises(CliError) as err:
            normalise(bad)
        assert err.value.code == "2004"


@pytest.mark.slow
def test_init_validate_run_package_validate_zip(
    project: Path, tmp_path: Path, wheel_cache: Path
) -> None:
    """The whole developer loop for a project named 产线 "A" 检测."""
    assert cli("validate", str(project)).returncode == 0
    image = write_image(tmp_path / "part.jpg")
    assert cli("run", str(project), "--pid", "p001", "--image", str(image)).returncode == 0
    (project / ".git").mkdir()
    (project / ".git" / "HEAD").write_text("ref", encoding="utf-8")
    (project / "old.zip").write_bytes(b"PK")
    (project / "build").mkdir()
    (project / "build" / "junk.py").write_text("", encoding="utf-8")
    (project / "venv2").mkdir()
    (project / "venv2" / "pyvenv.cfg").write_text("home=/usr", encoding="utf-8")
    module_dir = next(p.parent for p in project.glob("*/main.py"))
    (module_dir / "__pycache__").mkdir(exist_ok=True)
    (module_dir / "__pycache__" / "x.pyc").write_bytes(b"\0")
    key = tmp_path / "key.pem"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    out = tmp_path / "dist" / "pkg.zip"
    packaged = cli(
        "package",
        str(project),
        "-o",
        str(out),
        "--wheel-cache",
        str(wheel_cache),
        "--sign",
        str(key),
        "--json",
        timeout=900,
    )
    assert packaged.returncode == 0, packaged.stdout + packaged.stderr
    summary = json.loads(packaged.stdout)
    assert summary["signed"] and Path(summary["zip"]) == out.resolve()
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        checksums = zf.read("checksums.sha256")
        signature = bytes.fromhex(zf.read("SIGNATURE").decode().strip())
        requirements = zf.read("requirements.txt").decode()
    assert "manifest.json" in names and ".procvision_env.json" in names
    assert any(n.startswith("wheels/numpy-") for n in names)
    assert any(n.startswith("wheels/procvision_algorithm_sdk-") for n in names)
    assert not any(
        part in n for n in names for part in (".git/", "__pycache__", "build/", "venv2", ".zip")
    )
    assert "procvision-algorithm-sdk==" in requirements
    private.public_key().verify(signature, checksums)  # raises if the signature is wrong
    checked = cli("validate", "--zip", str(out), "--json")
    report = json.loads(checked.stdout)
    assert checked.returncode == 0, failures(report)
    assert {"zip layout", "requirements from wheels", "checksums"} <= {
        c["name"] for c in report["checks"]
    }
    # and the Runner's store installs it (offline venv from wheels/ only)
    from procvision_runner.store import PackageManager, PackageStore

    keys = tmp_path / "store" / "trusted_keys"
    keys.mkdir(parents=True)
    (keys / "dev.pub").write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    entry = PackageManager(PackageStore(tmp_path / "store")).install(out)
    assert entry["state"] == "deployed" and entry["supported_pids"] == ["p001", "p002"]
    # a tampered package fails its checksums
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(out) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "manifest.json":
                data = data.replace(b'"1.0.0"', b'"1.0.1"')
            dst.writestr(item, data)
    assert cli("validate", "--zip", str(tampered)).returncode == 1


@pytest.mark.slow
def test_package_refuses_editable_requirements_and_missing_project(
    project: Path, tmp_path: Path
) -> None:
    (project / "requirements.txt").write_text("-e ../somewhere\n", encoding="utf-8")
    result = cli("package", str(project), "-o", str(tmp_path / "x.zip"), "--json")
    assert result.returncode == 1
    error = json.loads(result.stdout)
    assert error["error_code"] == "2004" and "editable" in error["message"]
    assert not (tmp_path / "x.zip").exists()
    missing = cli("package", str(tmp_path / "nothing"))
    assert missing.returncode == 1 and "2002" in missing.stderr


@pytest.mark.slow
def test_package_skip_download_ships_project_wheels(project: Path, tmp_path: Path) -> None:
    from helpers.package_zips import dependency_wheels

    (project / "requirements.txt").write_text("", encoding="utf-8")
    (project / "wheels").mkdir()
    for wheel in dependency_wheels():  # the SDK's own numpy and Pillow
        shutil.copyfile(wheel, project / "wheels" / wheel.name)
    out = tmp_path / "p.zip"
    result = cli("package", str(project), "-s", "-o", str(out), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    wheels = json.loads(result.stdout)["wheels"]
    assert [w.split("-")[0] for w in wheels] == ["numpy", "pillow", "procvision_algorithm_sdk"]


# ---------------------------------------------------------------------------------------------
# bench


@pytest.mark.slow
def test_bench_reports_percentiles_and_breakdown(project: Path, tmp_path: Path) -> None:
    image = write_image(tmp_path / "b.png")
    result = cli(
        "bench",
        str(project),
        "--pid",
        "p001",
        "--image",
        str(image),
        "-n",
        "20",
        "--warmup",
        "2",
        "--json",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    for name in ("round_trip", "pre_execute", "execute"):
        values = summary["latency_ms"][name]
        assert values["p50"] <= values["p95"] <= values["p99"] <= values["max"]
    parts = summary["breakdown_ms"]["execute"]
    assert {"algorithm_ms", "transfer_ms", "queue_ms", "protocol_ms"} <= set(parts)
    human = cli("bench", str(project), "--pid", "p001", "--image", str(image), "-n", "5")
    assert human.returncode == 0 and "p99" in human.stdout and "protocol" in human.stdout
    assert cli("bench", str(project), "--pid", "x", "--image", str(image)).returncode == 1


def test_no_shared_memory_left_behind() -> None:
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm on this platform")
    leftovers = [n for n in os.listdir("/dev/shm") if "pv-validate" in n]
    assert leftovers == []


@pytest.mark.slow
def test_package_keeps_hashes_and_passes_validate_zip(
    project: Path, tmp_path: Path, wheel_cache: Path
) -> None:
    import hashlib

    lines = []
    for prefix in ("numpy-", "pillow-"):
        wheel = sorted(wheel_cache.glob(f"{prefix}*.whl"))
        if not wheel:  # the loop test fills the cache; make this test independent of order
            warm = cli(
                "package",
                str(project),
                "-o",
                str(tmp_path / "warm.zip"),
                "--wheel-cache",
                str(wheel_cache),
                timeout=900,
            )
            assert warm.returncode == 0, warm.stderr
            wheel = sorted(wheel_cache.glob(f"{prefix}*.whl"))
        name, version = wheel[-1].name.split("-")[:2]
        digest = hashlib.sha256(wheel[-1].read_bytes()).hexdigest()
        lines.append(f"{name}=={version} \\\n    --hash=sha256:{digest}")
    (project / "requirements.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "hashed.zip"
    result = cli(
        "package",
        str(project),
        "-o",
        str(out),
        "--wheel-cache",
        str(wheel_cache),
        "--json",
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with zipfile.ZipFile(out) as zf:
        requirements = zf.read("requirements.txt").decode()
    assert requirements.count("--hash=sha256:") == 3  # numpy, pillow and the SDK itself
    checked = cli("validate", "--zip", str(out), "--json")
    assert checked.returncode == 0, checked.stdout
