"""A configurable small project: the clean version passes validate; each case breaks one rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BASE = """\
import numpy as np

from procvision_algorithm_sdk import BaseAlgorithm, read_image_from_shared_memory

{prelude}

INFO = {{
    "name": "broken-algo",
    "version": "1.0.0",
    "supported_pids": ["p1", "p2"],
    "steps": [{{"index": 1, "name": "inspect", "params": {params}}}],
}}


class Algo({base}):
    def setup(self):
        {setup}

    def get_info(self):
        info = dict(INFO)
        {info}
        return info

    def pre_execute(self, step_index, pid, session, user_params, shared_mem_id, image_meta):
        image = read_image_from_shared_memory(shared_mem_id, image_meta)
        h, w = image.shape[:2]
        return {pre}

    def execute(self, step_index, pid, session, user_params, shared_mem_id, image_meta):
        image = read_image_from_shared_memory(shared_mem_id, image_meta)
        h, w = image.shape[:2]
        rect = {{"x": 0, "y": 0, "width": 10, "height": 10}}
        return {execute}
"""

DEFAULTS: dict[str, str] = {
    "prelude": "",
    "params": '[{"key": "threshold", "type": "float", "min": 0.0, "max": 1.0, "default": 0.5}]',
    "base": "BaseAlgorithm",
    "setup": "pass",
    "info": "pass",
    "pre": '{"status": "OK", "message": "ready", "data": {"calibration_rects": []}}',
    "execute": '{"status": "OK", "data": {"result_status": "OK", "defect_rects": []}}',
}

MANIFEST: dict[str, Any] = {
    "name": "broken-algo",
    "version": "1.0.0",
    "entry_point": "broken_algo.main:Algo",
    "supported_pids": ["p1", "p2"],
}


def write_project(
    root: Path,
    manifest: dict[str, Any] | None = None,
    manifest_text: str | None = None,
    **parts: str,
) -> Path:
    """Write the project into `root` with some parts replaced; return `root`."""
    values = dict(DEFAULTS)
    values.update(parts)
    (root / "broken_algo").mkdir(parents=True, exist_ok=True)
    (root / "broken_algo" / "__init__.py").write_text("", encoding="utf-8")
    (root / "broken_algo" / "main.py").write_text(BASE.format(**values), encoding="utf-8")
    text = manifest_text if manifest_text is not None else json.dumps(manifest or MANIFEST)
    (root / "manifest.json").write_text(text, encoding="utf-8")
    return root


def _ng(reason: str = '"scratch"', rects: str = "[rect]") -> str:
    return (
        '{"status": "OK", "data": {"result_status": "NG", '
        f'"ng_reason": {reason}, "defect_rects": {rects}}}}}'
    )


# (case id, write_project keyword arguments, check name, code, fragment of `where` or message)
CASES: list[tuple[str, dict[str, Any], str, str, str]] = [
    ("manifest-not-json", {"manifest_text": "{not json"}, "manifest", "2002", "JSON"),
    (
        "manifest-missing-name",
        {"manifest": {k: v for k, v in MANIFEST.items() if k != "name"}},
        "manifest",
        "2002",
        "manifest.name",
    ),
    (
        "manifest-unsafe-name",
        {"manifest": dict(MANIFEST, name="../evil")},
        "manifest",
        "2002",
        "manifest.name",
    ),
    (
        "entry-class-missing",
        {"manifest": dict(MANIFEST, entry_point="broken_algo.main:Nope")},
        "entry import",
        "2002",
        "manifest.entry_point",
    ),
    (
        "entry-module-raises",
        {"prelude": "raise RuntimeError('import-time failure')"},
        "entry import",
        "1009",
        "import-time failure",
    ),
    ("not-a-subclass", {"base": "object"}, "BaseAlgorithm subclass", "2002", "entry_point"),
    ("info-no-pids", {"info": "del info['supported_pids']"}, "get_info", "1008", "supported_pids"),
    (
        "pids-disagree",
        {"info": "info['supported_pids'] = ['p1']"},
        "manifest/get_info agreement",
        "2002",
        "supported_pids",
    ),
    (
        "version-disagree",
        {"info": "info['version'] = '2.0.0'"},
        "manifest/get_info agreement",
        "2002",
        "manifest.version",
    ),
    (
        "param-bad-type",
        {"params": '[{"key": "t", "type": "complex"}]'},
        "step schemas",
        "1006",
        "info.steps[0].params",
    ),
    (
        "asset-missing",
        {"manifest": dict(MANIFEST, required_assets={"p1": {"model": "models/m.onnx"}})},
        "required assets",
        "1003",
        "models/m.onnx",
    ),
    ("setup-raises", {"setup": "raise ValueError('no model')"}, "setup", "1009", "no model"),
    (
        "pre-error-no-message",
        {"pre": '{"status": "ERROR", "error_code": "1002"}'},
        "step 1 pre_execute",
        "1008",
        "message",
    ),
    (
        "pre-has-verdict",
        {"pre": '{"status": "OK", "message": "", "data": {"result_status": "NG"}}'},
        "step 1 pre_execute",
        "1008",
        "result_status",
    ),
    (
        "status-ng-top-level",
        {"execute": '{"status": "NG", "data": {"result_status": "NG"}}'},
        "step 1 execute",
        "1008",
        "status",
    ),
    (
        "ok-without-result-status",
        {"execute": '{"status": "OK", "data": {}}'},
        "step 1 execute",
        "1008",
        "result_status",
    ),
    (
        "ng-without-reason",
        {"execute": '{"status": "OK", "data": {"result_status": "NG", "defect_rects": [rect]}}'},
        "step 1 execute",
        "1008",
        "ng_reason",
    ),
    ("ng-reason-too-long", {"execute": _ng('"x" * 60')}, "step 1 execute", "1008", "ng_reason"),
    (
        "too-many-defects",
        {"execute": _ng(rects="[rect] * 21")},
        "step 1 execute",
        "1008",
        "defect_rects",
    ),
    (
        "rect-outside-image",
        {"execute": _ng(rects='[{"x": w - 5, "y": 0, "width": 10, "height": 10}]')},
        "step 1 execute",
        "1007",
        "defect_rects[0]",
    ),
    (
        "rect-float-coordinate",
        {"execute": _ng(rects='[{"x": 1.5, "y": 0, "width": 10, "height": 10}]')},
        "step 1 execute",
        "1007",
        "defect_rects[0].x",
    ),
    (
        "rect-zero-width",
        {"execute": _ng(rects='[{"x": 1, "y": 0, "width": 0, "height": 10}]')},
        "step 1 execute",
        "1007",
        "width",
    ),
    (
        "score-above-one",
        {"execute": _ng(rects="[dict(rect, score=1.5)]")},
        "step 1 execute",
        "1008",
        "score",
    ),
    (
        "ndarray-in-debug",
        {
            "execute": '{"status": "OK", "data": {"result_status": "OK", "defect_rects": [], '
            '"debug": {"mask": np.zeros((2, 2))}}}'
        },
        "step 1 execute",
        "1008",
        "debug",
    ),
    (
        "error-message-too-long",
        {"execute": '{"status": "ERROR", "error_code": "1009", "message": "m" * 150}'},
        "step 1 execute",
        "1008",
        "message",
    ),
    (
        "execute-raises",
        {"execute": "1 / 0"},
        "step 1 execute",
        "1009",
        "ZeroDivisionError",
    ),
    (
        "execute-returns-none",
        {"execute": "None"},
        "step 1 execute",
        "1008",
        "result",
    ),
]
