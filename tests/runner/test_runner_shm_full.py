"""A full /dev/shm: coded results (9999, retryable) instead of SIGBUS, in a private 4 MiB mount."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.runner_kit import FAULTY, ok

_SMALL_SHM_CHILD = """
import json, os, sys
import numpy as np
from procvision_algorithm_sdk import segment
from procvision_runner import Runner, RunnerConfig
from procvision_runner.slots import SlotRing

algo = sys.argv[1]
report = {}
name = segment.new_segment_name()
try:
    segment.create_segment(name, 8 << 20)
    report["create"] = "created"
except OSError as exc:
    report["create"] = [exc.errno, str(exc)]
report["left_behind"] = os.path.exists("/dev/shm/" + name)
ring = SlotRing("probe")
try:
    ring.acquire(8 << 20, 1.0)
    report["ring"] = "acquired"
except OSError as exc:
    report["ring"] = str(exc)
with ring.acquire(1024, 1.0) as slot:
    report["ring_after"] = slot.capacity >= 1024
ring.close()
config = dict(warmup_calls=0, warmup_shape=(16, 16, 3), execute_timeout_ms=20000)
with Runner(RunnerConfig(**config)) as runner:
    runner.load(algo)
    big = np.zeros((1500, 1000, 3), np.uint8)
    report["big"] = runner.execute("f1", 1, big)
    report["small"] = runner.execute("f1", 1, np.zeros((8, 8, 3), np.uint8))
config.update(warmup_calls=1, warmup_shape=(1500, 1000, 3))
with Runner(RunnerConfig(**config)) as runner:
    runner.load(algo)
    report["warm"] = runner.packages()[0]
print(json.dumps(report, default=str), flush=True)
"""


def _unshare_unavailable() -> str | None:
    """Why a private mount namespace cannot be made here, or None."""
    if shutil.which("unshare") is None:
        return "the unshare tool (util-linux) is not installed"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True
    )
    if probe.returncode != 0:
        return "unshare --mount is refused here (needs root or CAP_SYS_ADMIN)"
    return None


@pytest.mark.slow
def test_full_dev_shm_gives_coded_results_not_sigbus(tmp_path: Path) -> None:
    why = _unshare_unavailable()
    if why is not None:
        pytest.skip(f"needs a private 4 MiB /dev/shm: {why}")
    script = tmp_path / "small_shm.py"
    script.write_text(_SMALL_SHM_CHILD)
    shell = 'mount -t tmpfs -o size=4m tmpfs /dev/shm && exec "$0" "$@"'
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", shell]
    proc = subprocess.run(
        [*command, sys.executable, str(script), str(FAULTY)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["create"][0] == errno.ENOSPC and "shared memory exhausted" in report["create"][1]
    assert report["left_behind"] is False
    assert "shared memory exhausted" in report["ring"] and report["ring_after"] is True
    big = report["big"]
    assert big["status"] == "ERROR" and big["error_code"] == "9999", big
    assert "shared memory exhausted" in big["message"] and big["retryable"] is True
    ok(report["small"])
    warm = report["warm"]
    assert warm["state"] == "FAILED" and warm["error"]["error_code"] == "9999", warm
    assert "shared memory exhausted" in warm["error"]["message"]
