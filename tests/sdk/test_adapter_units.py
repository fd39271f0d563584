"""In-process checks of the adapter's pure helpers (the subprocess tests cover the worker)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from procvision_algorithm_sdk.adapter import (
    SessionCache,
    StartupError,
    discover_entry,
    entry_point_from_toml_text,
    evaluate_result,
    json_safe,
)


def test_toml_fallback_reads_only_the_procvision_table() -> None:
    text = (
        '[project]\nentry_point = "wrong:One"\n\n'
        "[tool.procvision.algorithm]  \n"
        "name = 'x'\n"
        "entry_point = 'pkg.mod:Algo'  # the class\n"
        '[tool.other]\nentry_point = "wrong:Two"\n'
    )
    assert entry_point_from_toml_text(text) == "pkg.mod:Algo"
    assert entry_point_from_toml_text('[tool.procvision]\nentry_point = "a:B"\n') is None


def test_discover_entry_reports_an_unreadable_manifest(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(StartupError, match=r"manifest\.json is not readable JSON"):
        discover_entry(None, {}, tmp_path)
    (tmp_path / "manifest.json").write_text('{"entry_point": 3}', encoding="utf-8")
    with pytest.raises(StartupError, match="no entry_point string"):
        discover_entry(None, {}, tmp_path)
    assert discover_entry("a:B", {"PROC_ALGO_ROOT": str(tmp_path)}, tmp_path) == (
        "a:B",
        "--entry",
        tmp_path,
    )


def test_json_safe_keeps_json_and_reprs_the_rest() -> None:
    value = {"a": [1, 2.5, None, "x"], "n": np.int64(4), "arr": np.zeros(2), "b": b"\x00"}
    safe = json_safe(value)
    assert safe["a"] == [1, 2.5, None, "x"] and safe["n"] == 4
    assert safe["arr"].startswith("array(") and safe["b"] == "b'\\x00'"
    assert json_safe(float("nan")) == "nan"


def test_evaluate_result_converts_numpy_only_when_needed() -> None:
    plain = {"status": "OK", "data": {"result_status": "OK"}}
    outcome = evaluate_result(plain, "execute", 10, 10, 20)
    assert (outcome.status, outcome.data) == ("OK", {"result_status": "OK"})
    with_numpy = {"status": "OK", "data": {"result_status": "OK", "s": np.float64(0.25)}}
    outcome = evaluate_result(with_numpy, "execute", None, None, 20)
    assert outcome.status == "OK" and type(outcome.data["s"]) is float
    too_many = {
        "status": "OK",
        "data": {
            "result_status": "NG",
            "ng_reason": "many",
            "defect_rects": [{"x": 0, "y": 0, "width": 1, "height": 1}] * 3,
        },
    }
    assert evaluate_result(too_many, "execute", 10, 10, 2).error_code == "1008"
    assert evaluate_result(too_many, "execute", 10, 10, 3).status == "OK"
    pre = evaluate_result({"status": "OK", "data": {"result_status": "OK"}}, "pre", 5, 5, 20)
    assert pre.error_code == "1008" and "pre_execute" in pre.message


def test_session_cache_drops_the_least_recently_used() -> None:
    cache = SessionCache(2)
    first = cache.get("a", {"k": 1})
    cache.get("b", None)
    assert cache.get("a", None) is first  # a is now most recent
    cache.get("c", None)
    assert "b" not in cache and "a" in cache and len(cache) == 2
    assert first.session.context == {"k": 1}
