"""Venv build time of the example package: pip vs uv, side by side in one run.

Builds the store's venv (`store.venv.build_venv`, what an install runs) for
examples/algorithm-example's offline zip (numpy, Pillow and the SDK from wheels/), alternating
the installers, `--reps` times each in fresh directories. Prints each time, the medians and
the ratio pip/uv.

    .venv/bin/python benchmarks/venv_build.py [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from helpers.package_zips import make_package_zip  # noqa: E402

from procvision_runner.store.venv import build_venv  # noqa: E402


def _one(zip_path: Path, work: Path, installer: str) -> float:
    pkg = work / installer
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(pkg)
    started = time.perf_counter()
    build_venv(pkg, sys.executable, timeout_s=900, installer=installer)
    return time.perf_counter() - started


def main() -> None:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"pip": [], "uv": []}
    with tempfile.TemporaryDirectory(prefix="pv-bench-venv-") as tmp:
        zip_path = make_package_zip(Path(tmp) / "example.zip")
        for rep in range(args.reps):
            order = ("pip", "uv") if rep % 2 == 0 else ("uv", "pip")
            for installer in order:
                with tempfile.TemporaryDirectory(dir=tmp) as work:
                    times[installer].append(_one(zip_path, Path(work), installer))
    print("| installer | runs (s) | median (s) |")
    print("|---|---|---|")
    for name, values in times.items():
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {name} | {runs} | {statistics.median(values):.2f} |")
    ratio = statistics.median(times["pip"]) / statistics.median(times["uv"])
    print(f"\npip / uv (median): {ratio:.1f}x")


if __name__ == "__main__":
    main()
