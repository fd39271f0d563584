"""Run the example package in-process on every sample image and print one line per image.

Usage: .venv/bin/python scripts/main_job_inprocess.py [--mode fast|accurate] [--json]

Each image gets its own Session and goes through both steps (on_step_start, pre_execute,
execute, on_step_finish), read from real shared memory. Exit 0 when every verdict matches
images/ground_truth.json, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from procvision_algorithm_sdk import BaseAlgorithm, Session, write_image_array_to_shared_memory
from procvision_algorithm_sdk.contract import (
    check_execute_result,
    check_pre_execute_result,
    find_step,
    validate_user_params,
)
from procvision_algorithm_sdk.shared_memory import dev_clear_shared_memory

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DIR = ROOT / "examples" / "algorithm-example"
IMAGES_DIR = EXAMPLE_DIR / "images"


def load_algorithm() -> BaseAlgorithm:
    """Import the manifest's entry point from the project folder and instantiate it."""
    manifest = json.loads((EXAMPLE_DIR / "manifest.json").read_text(encoding="utf-8"))
    module_name, class_name = manifest["entry_point"].split(":")
    sys.path.insert(0, str(EXAMPLE_DIR))
    algorithm_class = getattr(importlib.import_module(module_name), class_name)
    algo: BaseAlgorithm = algorithm_class()
    return algo


def run_image(
    algo: BaseAlgorithm, file: str, shm_id: str, mode: str, pid: str = "p001"
) -> dict[str, Any]:
    """Run both steps on one image; return verdicts, reason, defect count, time, problems."""
    with Image.open(IMAGES_DIR / file) as image:
        pixels = np.asarray(image.convert("RGB"))
    meta = write_image_array_to_shared_memory(shm_id, pixels)
    meta.update(timestamp_ms=int(time.time() * 1000), camera_id="cam-1")
    width, height = meta["width"], meta["height"]
    session = Session(f"main-{file}", {"product_code": pid, "trace_id": file})
    info = algo.get_info()
    line: dict[str, Any] = {"file": file, "problems": []}
    started = time.perf_counter()
    for step, given in ((1, {}), (2, {"mode": mode})):
        spec = find_step(info, step) or {}
        params, problems = validate_user_params(spec.get("params"), given, width, height)
        algo.on_step_start(step, session, session.context)
        pre = algo.pre_execute(step, pid, session, params, shm_id, meta)
        problems += check_pre_execute_result(pre)
        if pre.get("status") != "OK":
            line[f"step{step}"] = "ERROR"
            algo.on_step_finish(step, session, pre)
            break
        result = algo.execute(step, pid, session, params, shm_id, meta)
        problems += check_execute_result(result, width, height)
        algo.on_step_finish(step, session, result)
        data = result.get("data") or {}
        line[f"step{step}"] = data.get("result_status", result.get("status"))
        if data.get("result_status") == "NG":
            line["ng_reason"] = data.get("ng_reason")
            line["defects"] = len(data.get("defect_rects") or [])
        line["problems"] += [f"{p.where}: {p.code} {p.message}" for p in problems]
    line["ms"] = round((time.perf_counter() - started) * 1000.0, 1)
    return line


def main() -> int:
    """Run every sample image and print a line per image; 0 iff all match the ground truth."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["fast", "accurate"], default="fast")
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    args = parser.parse_args()
    # The algorithm's info/debug lines would bury the verdict table; PROC_LOG_LEVEL overrides.
    os.environ.setdefault("PROC_LOG_LEVEL", "warning")

    truth = json.loads((IMAGES_DIR / "ground_truth.json").read_text(encoding="utf-8"))["images"]
    algo = load_algorithm()
    algo.setup()
    shm_id = f"pvmain{os.getpid()}"
    all_match = True
    try:
        for file in sorted(truth):
            line = run_image(algo, file, shm_id, args.mode)
            expected = truth[file]
            defects = line.get("defects", 0)
            line["matches_ground_truth"] = (
                line.get("step1") == expected["step1"]
                and line.get("step2") == expected["step2"]
                and (expected["step2"] == "OK" or defects == len(expected["missing_screws"]))
                and not line["problems"]
            )
            all_match = all_match and line["matches_ground_truth"]
            if args.json:
                print(json.dumps(line), flush=True)
            else:
                print(
                    f"{file:<18} step1={line.get('step1', '-'):<5}"
                    f" step2={line.get('step2', '-'):<5}"
                    f" ng_reason={line.get('ng_reason') or '-'!s:<18} defects={defects}"
                    f" time={line['ms']:7.1f} ms"
                    f" {'ok' if line['matches_ground_truth'] else 'MISMATCH'}",
                    flush=True,
                )
                for problem in line["problems"]:
                    print(f"    contract: {problem}", flush=True)
    finally:
        algo.teardown()
        dev_clear_shared_memory(shm_id)
    return 0 if all_match else 1


if __name__ == "__main__":
    sys.exit(main())
