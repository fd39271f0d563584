"""CPU of one dependency-closure check: uv's resolver against pip's (issue 14, CI time).

The wheels/ of a real package (numpy, Pillow and the SDK wheel, as the tests' zips carry them)
are resolved for this interpreter by `store.closure.check_closure(..., resolver="pip" | "uv")`,
alternating the two, once with a complete closure and once with a transitive dependency missing
(the refusal path). Prints the median CPU (user + sys of the resolver process) and wall time of
each, and pip / uv.

    .venv/bin/python benchmarks/closure_resolvers.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _once(requirements: str, wheels: Path, resolver: str) -> tuple[float, float, int]:
    """(CPU s, wall s, number of problems) of one check."""
    from procvision_runner.store.closure import check_closure
    from procvision_runner.store.wheels import TargetEnv

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    problems = check_closure(requirements, wheels, TargetEnv.current(), resolver=resolver)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, len(problems)


def main() -> None:
    """Alternate pip and uv over the same wheels; print medians and pip / uv."""
    from helpers.package_zips import dependency_wheels, requirements_for, sdk_wheel, tiny_wheel

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pv-closure-bench-") as tmp:
        wheels = Path(tmp) / "wheels"
        wheels.mkdir()
        for whl in [*dependency_wheels(), sdk_wheel()]:
            shutil.copyfile(whl, wheels / whl.name)
        complete = requirements_for(sorted(wheels.iterdir()))
        tiny_wheel(wheels, "pv-needs-dep", "1.0", ["pv-missing-dep>=2"])
        cases = {"complete": complete, "missing dep": complete + "pv-needs-dep==1.0\n"}
        rows: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
        for _ in range(args.rounds):
            for case, requirements in cases.items():
                for resolver in ("pip", "uv"):
                    sample = _once(requirements, wheels, resolver)
                    rows.setdefault((case, resolver), []).append(sample)
    print(f"rounds: {args.rounds}; medians of one check")
    print(f"{'case':<12} {'resolver':<8} {'problems':>8} {'CPU ms':>8} {'wall ms':>8}")
    for (case, resolver), samples in rows.items():
        cpu = statistics.median(s[0] for s in samples)
        wall = statistics.median(s[1] for s in samples)
        print(f"{case:<12} {resolver:<8} {samples[0][2]:>8} {cpu * 1000:8.0f} {wall * 1000:8.0f}")
    for case in cases:
        pip = statistics.median(s[0] for s in rows[(case, "pip")])
        uv = statistics.median(s[0] for s in rows[(case, "uv")])
        print(f"{case}: pip / uv CPU = {pip / uv:.1f}x")


if __name__ == "__main__":
    main()
