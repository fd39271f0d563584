"""Start-up cost of the light commands against the eager import of everything (issue 14, CI time).

Every case is a fresh interpreter, run in turn round after round (so a busy machine slows all of
them alike): the light commands as a station integrator and an algorithm developer type them,
and the baseline `eager`, which imports what every command imported before the imports were
made lazy (the Runner, the store's install checks, signing, the HTTP client, the adapter, numpy,
cryptography, packaging, pathspec). `python` is the interpreter alone, the floor. Prints the
median CPU (user + sys of the child) and wall time, and each case's CPU as a ratio of `eager`.

    .venv/bin/python benchmarks/cli_startup.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# What the command lines imported at start-up before: the modules, and the libraries that those
# modules now load only inside the functions that need them.
EAGER = (
    "numpy",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
    "cryptography.hazmat.primitives.serialization",
    "packaging.requirements",
    "packaging.tags",
    "pathspec",
    "importlib.metadata",
    "procvision_runner.runner",
    "procvision_runner.client",
    "procvision_runner.store.manager",
    "procvision_runner.store.install",
    "procvision_runner.store.closure",
    "procvision_runner.store.signing",
    "procvision_runner.store.sdk_substitute",
    "procvision_algorithm_sdk.adapter.entry",
    "procvision_algorithm_sdk.shared_memory",
    "procvision_runner.cli",
    "procvision_devtools.main",
    "procvision_devtools.execute_only",
    "procvision_devtools.package",
)


def _cases(work: Path) -> dict[str, list[str]]:
    py = sys.executable
    runner = [py, "-m", "procvision_runner.cli"]
    store = ["--store", str(work / "store")]
    dev = [py, "-m", "procvision_devtools"]
    return {
        "python": [py, "-c", "pass"],
        "eager": [py, "-c", "import " + ", ".join(EAGER)],
        "runner --help": [*runner, "--help"],
        "runner list": [*runner, *store, "list"],
        "runner deactivate (refused)": [*runner, *store, "deactivate", "--pid", "P1"],
        "cli --help": [*dev, "--help"],
        "cli init": [*dev, "init", "bench algo", "-d", str(work / "init"), "--force"],
    }


def _once(argv: list[str]) -> tuple[float, float]:
    """(CPU s, wall s) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def main() -> None:
    """Run every case `--rounds` times, interleaved; print medians and ratios to `eager`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pv-cli-startup-") as tmp:
        cases = _cases(Path(tmp))
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for argv in cases.values():
            _once(argv)  # warm the page cache and the bytecode caches
        for _ in range(args.rounds):
            for name, argv in cases.items():
                samples[name].append(_once(argv))
    cpu = {n: statistics.median(c for c, _ in s) for n, s in samples.items()}
    wall = {n: statistics.median(w for _, w in s) for n, s in samples.items()}
    print(f"rounds: {args.rounds}; medians per fresh process")
    print(f"{'case':<30} {'CPU ms':>8} {'wall ms':>8} {'CPU / eager':>12}")
    for name in cases:
        ratio = cpu[name] / cpu["eager"]
        print(f"{name:<30} {cpu[name] * 1000:8.0f} {wall[name] * 1000:8.0f} {ratio:12.2f}")


if __name__ == "__main__":
    main()
