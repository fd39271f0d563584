"""Issue 16 item 5: `run` shows the worker's log lines of each step, with level and time, and a
failing algorithm's traceback ends at the author's own line (not numpy's, not the adapter's)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from algos.cli.broken import write_project
from PIL import Image

CHATTY = """(
            print(f"printed mean {int(image.mean())}"),
            self.logger.info("logged", threshold=user_params.get("threshold")),
            self.logger.debug("details"),
            {"status": "OK", "data": {"result_status": "OK", "defect_rects": []}},
        )[-1]"""

# numpy raises inside its own Python code, two library frames below the author's line
FAILING = """(print("about to invert"), np.linalg.inv(np.ones((2, 3))))[1]"""

TIME = r"\d\d:\d\d:\d\d\.\d{3}"


def _cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "procvision_devtools", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=240)


def _image(path: Path, value: int) -> Path:
    Image.fromarray(np.full((120, 160, 3), value, np.uint8)).save(path)
    return path


def _frames(trace: str) -> list[str]:
    return re.findall(r'File "([^"]+)", line \d+', trace)


@pytest.mark.slow
def test_run_verbose_shows_each_steps_own_lines_with_level_and_time(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", execute=CHATTY)
    a, b = _image(tmp_path / "a.png", 10), _image(tmp_path / "b.png", 200)
    images = ["--image", str(a), "--image", str(b)]
    text = _cli("run", str(project), "--pid", "p1", *images, "-v")
    assert text.returncode == 0, text.stdout + text.stderr
    assert re.search(rf"{TIME} INFO +printed mean 10\n", text.stdout), text.stdout
    assert re.search(rf"{TIME} INFO +logged threshold=0.5\n", text.stdout), text.stdout
    assert re.search(rf"{TIME} DEBUG +details\n", text.stdout), text.stdout
    # the second image's step shows its own line, not the first's again
    second = text.stdout.split(f"image {b}")[1]
    assert "printed mean 200" in second and "printed mean 10" not in second, text.stdout

    out = _cli("run", str(project), "--pid", "p1", *images, "-v", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    first, last = json.loads(out.stdout)["steps"]
    assert [e["message"] for e in first["logs"]] == ["printed mean 10", "logged", "details"]
    assert [e["level"] for e in first["logs"]] == ["info", "info", "debug"]
    assert first["logs"][1]["fields"] == {"threshold": 0.5}
    assert all(re.match(rf"\d{{4}}-\d\d-\d\dT{TIME}[+-]", e["time"]) for e in first["logs"])
    assert last["logs"][0]["message"] == "printed mean 200"

    quiet = _cli("run", str(project), "--pid", "p1", "--image", str(a), "--json")
    assert quiet.returncode == 0 and "logs" not in json.loads(quiet.stdout)["steps"][0]
    plain = _cli("run", str(project), "--pid", "p1", "--image", str(a))
    assert plain.returncode == 0 and "printed mean" not in plain.stdout + plain.stderr


@pytest.mark.slow
def test_a_failing_step_shows_its_logs_and_a_traceback_ending_at_the_authors_line(
    tmp_path: Path,
) -> None:
    project = write_project(tmp_path / "p", execute=FAILING)
    user_file = str((project / "broken_algo" / "main.py").resolve())
    image = _image(tmp_path / "a.png", 10)

    out = _cli("run", str(project), "--pid", "p1", "--image", str(image), "--json")
    assert out.returncode == 1, out.stdout + out.stderr
    (step,) = json.loads(out.stdout)["steps"]
    assert step["execute"]["error_code"] == "1009"
    printed, error = step["logs"]  # shown without -v: the step failed
    assert printed["message"] == "about to invert" and printed["level"] == "info"
    assert error["level"] == "error" and "LinAlgError" in error["message"]
    frames = _frames(error["traceback"])
    assert frames == [user_file], error["traceback"]  # no adapter frame above, no numpy below
    assert error["traceback"].rstrip().endswith("Last 2 dimensions of the array must be square")
    assert error["where"].startswith(user_file + ":")

    text = _cli("run", str(project), "--pid", "p1", "--image", str(image))
    assert text.returncode == 1
    assert re.search(rf"{TIME} INFO +about to invert\n", text.stdout), text.stdout
    assert re.search(rf"{TIME} ERROR +execute raised LinAlgError", text.stdout), text.stdout
    assert _frames(text.stdout) == [user_file], text.stdout
    assert "np.linalg.inv(np.ones((2, 3)))" in text.stdout  # the author's line is quoted


@pytest.mark.slow
def test_an_execute_only_run_shows_its_lines_too(tmp_path: Path) -> None:
    project = tmp_path / "x"
    (project / "algo").mkdir(parents=True)
    (project / "algo" / "__init__.py").write_text("")
    (project / "algo" / "main.py").write_text(
        "from procvision_algorithm_sdk import BaseAlgorithm\n\n\n"
        "class Algo(BaseAlgorithm):\n"
        "    def execute(self, step_index, step_desc, cur_image, guide_image, guide_info):\n"
        "        print('compared', cur_image.shape[1], 'columns')\n"
        "        return {'status': 'OK', 'data': {'result_status': 'OK'}}\n"
    )
    manifest = {"name": "x", "version": "1.0.0", "entry_point": "algo.main:Algo"}
    (project / "manifest.json").write_text(json.dumps(manifest))
    cur, guide = _image(tmp_path / "c.png", 10), _image(tmp_path / "g.png", 20)
    images = ["--cur-image", str(cur), "--guide-image", str(guide)]
    out = _cli("run", str(project), *images, "-v", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    (step,) = json.loads(out.stdout)["steps"]
    (entry,) = step["logs"]
    assert entry["level"] == "info" and entry["message"] == "compared 160 columns"
    text = _cli("run", str(project), *images)
    assert text.returncode == 0 and "compared" not in text.stdout + text.stderr
