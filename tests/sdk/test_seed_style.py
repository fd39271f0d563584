"""The seed's public API, and an algorithm written exactly in the seed's style, run unchanged."""

from __future__ import annotations

import inspect
import io
import json
import os
import random
import subprocess
import sys
import textwrap
import time
import uuid

import numpy as np
import pytest
from PIL import Image

import procvision_algorithm_sdk as sdk
from procvision_algorithm_sdk import (
    BaseAlgorithm,
    Diagnostics,
    FatalError,
    GPUOutOfMemoryError,
    ProgramError,
    RecoverableError,
    Session,
    StructuredLogger,
    read_image_from_shared_memory,
    write_image_array_to_shared_memory,
)
from procvision_algorithm_sdk.contract import (
    check_execute_result,
    check_info,
    check_manifest,
    check_pre_execute_result,
)
from procvision_algorithm_sdk.shared_memory import (
    dev_clear_shared_memory,
    dev_write_image_to_shared_memory,
)

SEED_EXPORTS = {
    "BaseAlgorithm",
    "Session",
    "read_image_from_shared_memory",
    "write_image_array_to_shared_memory",
    "StructuredLogger",
    "Diagnostics",
    "RecoverableError",
    "FatalError",
    "GPUOutOfMemoryError",
    "ProgramError",
}


# --- An algorithm written the way the seed's users write them (kept as is, untyped). ---


class SeedStyleAlgorithm(BaseAlgorithm):
    def __init__(self):
        super().__init__()
        self._supported_pids = ["A01", "A02"]

    def get_info(self):
        return {
            "name": "seed-style",
            "version": "1.0",
            "description": "螺丝检测",
            "supported_pids": self._supported_pids,
            "steps": [
                {
                    "index": 1,
                    "name": "定位",
                    "params": [
                        {"key": "roi", "type": "rect", "required": False},
                        {
                            "key": "exposure",
                            "type": "float",
                            "default": 12.5,
                            "min": 8.0,
                            "max": 16.0,
                            "unit": "ms",
                        },
                    ],
                },
                {
                    "index": 2,
                    "name": "检测",
                    "params": [
                        {
                            "key": "threshold",
                            "type": "float",
                            "default": 0.7,
                            "min": 0.5,
                            "max": 0.9,
                        },
                        {"key": "mode", "type": "enum", "choices": ["fast", "accurate"]},
                    ],
                },
            ],
        }

    def pre_execute(self, step_index, pid, session, user_params, shared_mem_id, image_meta):
        if pid not in self._supported_pids:
            return {"status": "ERROR", "message": f"不支持的产品型号: {pid}", "error_code": "1001"}
        img = read_image_from_shared_memory(shared_mem_id, image_meta)
        if img is None:
            return {"status": "ERROR", "message": "图像数据为空", "error_code": "1002"}
        self.logger.info("pre_execute", step_index=step_index, pid=pid)
        return {
            "status": "OK",
            "message": "准备就绪",
            "data": {"calibration_rects": [{"x": 10, "y": 10, "width": 50, "height": 40}]},
            "debug": {"latency_ms": 0.0, "image_shape": list(img.shape)},
        }

    def execute(self, step_index, pid, session, user_params, shared_mem_id, image_meta):
        start = time.time()
        img = read_image_from_shared_memory(shared_mem_id, image_meta)
        if img is None:
            return {"status": "ERROR", "message": "图像数据为空", "error_code": "1002"}
        h, w = img.shape[:2]
        session.set("mean_" + str(step_index), float(img.mean()))
        self.diagnostics.publish("mean", float(img.mean()))
        latency_ms = (time.time() - start) * 1000
        if step_index == 1:
            rng = random.Random(session.id)
            rects = []
            for _ in range(3):
                rw, rh = rng.randint(10, 80), rng.randint(10, 80)
                rects.append(
                    {
                        "x": rng.randint(0, w - rw),
                        "y": rng.randint(0, h - rh),
                        "width": rw,
                        "height": rh,
                        "label": "scratch",
                        "score": round(rng.random(), 2),
                    }
                )
            return {
                "status": "OK",
                "data": {
                    "result_status": "NG",
                    "ng_reason": "检测到划痕",
                    "defect_rects": rects,
                    "debug": {"latency_ms": latency_ms},
                },
            }
        return {
            "status": "OK",
            "data": {
                "result_status": "OK",
                "position_rects": [{"x": 0, "y": 0, "width": w, "height": h, "label": "board"}],
                "debug": {"latency_ms": latency_ms},
            },
        }


@pytest.fixture
def shm_id():
    """A unique segment id, cleared afterwards whatever happens."""
    name = f"pvseed{os.getpid()}{uuid.uuid4().hex[:8]}"
    yield name
    dev_clear_shared_memory(name)


def _run_two_steps(algo, shm_id, meta, session):
    results = []
    for step in (1, 2):
        algo.on_step_start(step, session, session.context)
        pre = algo.pre_execute(step, "A01", session, {}, shm_id, meta)
        exe = algo.execute(step, "A01", session, {}, shm_id, meta)
        algo.on_step_finish(step, session, exe)
        results.append((pre, exe))
    return results


def test_seed_style_algorithm_runs_unchanged_on_an_array(shm_id):
    rng = np.random.default_rng(7)
    frame = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    write_image_array_to_shared_memory(shm_id, frame)
    meta = {"width": 640, "height": 480, "color_space": "RGB", "timestamp_ms": 1, "camera_id": "c"}
    algo = SeedStyleAlgorithm()
    algo.setup()
    session = Session("run-1", {"product_code": "A01", "operator": "op", "trace_id": "t"})
    (pre1, exe1), (pre2, exe2) = _run_two_steps(algo, shm_id, meta, session)
    algo.teardown()

    assert check_info(algo.get_info()) == []
    for pre in (pre1, pre2):
        assert check_pre_execute_result(pre) == []
        assert pre["debug"]["image_shape"] == [480, 640, 3]
    for exe in (exe1, exe2):
        assert check_execute_result(exe, 640, 480) == []
    assert exe1["data"]["result_status"] == "NG"
    assert len(exe1["data"]["defect_rects"]) == 3
    assert exe2["data"]["result_status"] == "OK"
    assert session.get("mean_1") == pytest.approx(float(frame.mean()))
    assert algo.diagnostics.get()["mean"] == pytest.approx(float(frame.mean()))
    # The same session id gives the same "random" rects: the seed's examples were deterministic.
    again = SeedStyleAlgorithm().execute(1, "A01", Session("run-1"), {}, shm_id, meta)
    assert again["data"]["defect_rects"] == exe1["data"]["defect_rects"]


def test_seed_style_algorithm_reads_encoded_bytes(shm_id):
    frame = np.zeros((120, 160, 3), dtype=np.uint8)
    frame[:, 80:] = (200, 40, 10)
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    dev_write_image_to_shared_memory(shm_id, buffer.getvalue())
    meta = {"width": 160, "height": 120, "color_space": "RGB", "timestamp_ms": 1, "camera_id": "c"}
    algo = SeedStyleAlgorithm()
    pre = algo.pre_execute(1, "A02", Session("s"), {}, shm_id, meta)
    assert check_pre_execute_result(pre) == []
    assert pre["debug"]["image_shape"] == [120, 160, 3]
    assert np.array_equal(read_image_from_shared_memory(shm_id, meta), frame)


def test_seed_style_error_paths_pass_the_contract(shm_id):
    write_image_array_to_shared_memory(shm_id, np.zeros((10, 10, 3), dtype=np.uint8))
    algo = SeedStyleAlgorithm()
    wrong_pid = algo.pre_execute(1, "ZZZ", Session("s"), {}, shm_id, {"width": 10, "height": 10})
    assert wrong_pid["error_code"] == "1001"
    assert check_pre_execute_result(wrong_pid) == []
    no_image = algo.execute(1, "A01", Session("s"), {}, shm_id, {"width": 0, "height": 0})
    assert no_image["error_code"] == "1002"
    assert check_execute_result(no_image, 10, 10) == []


def test_seed_style_manifest_agrees_with_get_info():
    info = SeedStyleAlgorithm().get_info()
    manifest = {
        "name": "seed-style",
        "version": "1.0",
        "entry_point": "seed_style.main:SeedStyleAlgorithm",
        "supported_pids": ["A01", "A02"],
        "steps": info["steps"],
    }
    assert check_manifest(manifest, info) == []


# --- The seed's public API. ---


def test_the_ten_exports():
    assert set(sdk.__all__) == SEED_EXPORTS
    for name in SEED_EXPORTS:
        assert getattr(sdk, name) is not None


def _seed_compatible(func, expected):
    """The seed's parameters come first, in order, with the seed's defaults; any addition is
    optional (so every seed-era call still binds the same way)."""
    params = list(inspect.signature(func).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert [(p.name, p.default) for p in positional[: len(expected)]] == expected
    extras = positional[len(expected) :] + [p for p in params if p.kind is p.KEYWORD_ONLY]
    assert all(p.default is not inspect.Parameter.empty for p in extras), extras


E = inspect.Parameter.empty
CALL = [("step_index", E), ("pid", E), ("session", E), ("user_params", E)]
CALL += [("shared_mem_id", E), ("image_meta", E)]
HOOK = [("step_index", E), ("session", E)]


@pytest.mark.parametrize(
    "func, expected",
    [
        (BaseAlgorithm.__init__, [("self", E)]),
        (BaseAlgorithm.setup, [("self", E)]),
        (BaseAlgorithm.teardown, [("self", E)]),
        (
            BaseAlgorithm.on_step_start,
            [("self", E), ("step_index", E), ("session", E), ("context", E)],
        ),
        (
            BaseAlgorithm.on_step_finish,
            [("self", E), ("step_index", E), ("session", E), ("result", E)],
        ),
        (BaseAlgorithm.reset, [("self", E), ("session", E)]),
        (BaseAlgorithm.get_info, [("self", E)]),
        (BaseAlgorithm.pre_execute, [("self", E), *CALL]),
        (BaseAlgorithm.execute, [("self", E), *CALL]),
        (Session.__init__, [("self", E), ("id", E), ("context", None)]),
        (Session.get, [("self", E), ("key", E), ("default", None)]),
        (Session.set, [("self", E), ("key", E), ("value", E)]),
        (Session.delete, [("self", E), ("key", E)]),
        (Session.exists, [("self", E), ("key", E)]),
        (StructuredLogger.__init__, [("self", E), ("sink", None)]),
        (StructuredLogger.info, [("self", E), ("message", E)]),
        (StructuredLogger.debug, [("self", E), ("message", E)]),
        (StructuredLogger.error, [("self", E), ("message", E)]),
        (StructuredLogger.warning, [("self", E), ("message", E)]),
        (Diagnostics.__init__, [("self", E)]),
        (Diagnostics.publish, [("self", E), ("key", E), ("value", E)]),
        (Diagnostics.get, [("self", E)]),
        (read_image_from_shared_memory, [("shared_mem_id", E), ("image_meta", E)]),
    ],
)
def test_seed_signatures(func, expected):
    _seed_compatible(func, expected)


def test_seed_writer_signatures():
    # The seed called these positionally: (id, array) and (id, bytes); (id) to clear.
    for func, arity in (
        (write_image_array_to_shared_memory, 2),
        (dev_write_image_to_shared_memory, 2),
        (dev_clear_shared_memory, 1),
    ):
        params = list(inspect.signature(func).parameters.values())
        required = [p for p in params if p.default is E and p.kind is p.POSITIONAL_OR_KEYWORD]
        assert len(required) == arity, func.__name__
        assert params[0].name == "shared_mem_id", func.__name__


def test_logger_methods_take_free_fields():
    for method in ("info", "debug", "error", "warning"):
        kinds = [
            p.kind for p in inspect.signature(getattr(StructuredLogger, method)).parameters.values()
        ]
        assert inspect.Parameter.VAR_KEYWORD in kinds


def test_base_algorithm_abstract_methods_and_init_attributes():
    assert BaseAlgorithm.__abstractmethods__ == {"get_info", "pre_execute", "execute"}
    with pytest.raises(TypeError):
        BaseAlgorithm()  # type: ignore[abstract]
    algo = SeedStyleAlgorithm()
    assert isinstance(algo.logger, StructuredLogger)
    assert isinstance(algo.diagnostics, Diagnostics)
    assert algo._resources_loaded is False
    assert algo._model_version is None
    assert algo._supported_pids == ["A01", "A02"]
    # The optional hooks are no-ops by default.
    session = Session("s")
    assert algo.setup() is None
    assert algo.on_step_start(1, session, {}) is None
    assert algo.on_step_finish(1, session, {}) is None
    assert algo.reset(session) is None
    assert algo.teardown() is None


def test_exception_classes():
    for cls in (RecoverableError, FatalError, GPUOutOfMemoryError, ProgramError):
        assert issubclass(cls, Exception)
        with pytest.raises(cls, match="camera busy"):
            raise cls("camera busy")
    assert GPUOutOfMemoryError("x").error_code == "1004"
    assert RecoverableError("x").retryable is True
    assert FatalError("x").retryable is False


def test_session_id_context_and_state():
    context = {"product_code": "A01", "operator": "op", "nested": {"k": 1}}
    session = Session("run-9", context)
    assert session.id == "run-9"
    with pytest.raises(AttributeError):
        session.id = "other"  # type: ignore[misc]
    context["nested"]["k"] = 2  # the caller's dict changing later does not leak in
    got = session.context
    assert got == {"product_code": "A01", "operator": "op", "nested": {"k": 1}}
    got["nested"]["k"] = 3
    got["new"] = True
    assert session.context == {"product_code": "A01", "operator": "op", "nested": {"k": 1}}
    assert Session("x").context == {}

    assert session.get("missing") is None
    assert session.get("missing", 5) == 5
    assert session.exists("board") is False
    session.set("board", {"x": 1, "rects": [1, 2]})
    assert session.exists("board") is True
    assert session.get("board") == {"x": 1, "rects": [1, 2]}
    assert session.delete("board") is True
    assert session.delete("board") is False
    assert session.exists("board") is False


@pytest.mark.parametrize(
    "value",
    [object(), {1, 2}, b"bytes", np.zeros(3), {"k": object()}, float("nan"), [float("inf")]],
)
def test_session_set_rejects_non_json(value):
    session = Session("s")
    with pytest.raises(TypeError):
        session.set("k", value)
    assert session.exists("k") is False


def test_session_keys_must_be_strings():
    session = Session("s")
    with pytest.raises(TypeError, match="keys must be strings"):
        session.set(1, "v")  # type: ignore[arg-type]
    session.set("ok", 1)
    assert session._take_changes() == {"set": {"ok": 1}, "deleted": []}


def test_session_take_changes():
    session = Session("s")
    session.set("a", 1)
    session.set("b", {"n": [1]})
    session._mark()
    assert session._take_changes() == {"set": {}, "deleted": []}
    session.set("c", 3)
    session.set("b", {"n": [2]})
    session.delete("a")
    changes = session._take_changes()
    assert changes == {"set": {"b": {"n": [2]}, "c": 3}, "deleted": ["a"]}
    # Taking marks again; the taken change set is a copy.
    assert session._take_changes() == {"set": {}, "deleted": []}
    changes["set"]["b"]["n"].append(99)
    assert session.get("b") == {"n": [2]}
    # A key deleted then set again is a set; set then deleted is a delete.
    session.delete("c")
    session.set("c", 4)
    session.set("d", 5)
    session.delete("d")
    assert session._take_changes() == {"set": {"c": 4}, "deleted": ["d"]}
    # Another copy of the state follows along by applying the change sets.
    mirror = Session("s")
    mirror._apply_changes({"set": {"b": {"n": [2]}, "c": 4}, "deleted": ["a", "d"]})
    assert mirror._snapshot() == session._snapshot()


def _records(sink: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in sink.getvalue().splitlines()]


def test_logger_record_format(monkeypatch):
    monkeypatch.delenv("PROC_LOG_LEVEL", raising=False)
    sink = io.StringIO()
    log = StructuredLogger(sink)
    before = int(time.time() * 1000)
    log.info("board located", x=10, score=0.5, tags=["a"])
    log.warning("low light", level_pct=12)
    log.debug("detail")
    log.error("failed", step_index=2)
    after = int(time.time() * 1000)
    records = _records(sink)
    assert [r["level"] for r in records] == ["info", "warning", "debug", "error"]
    first = records[0]
    assert list(first)[:3] == ["level", "timestamp_ms", "message"]
    assert first["message"] == "board located"
    assert (first["x"], first["score"], first["tags"]) == (10, 0.5, ["a"])
    assert all(before <= r["timestamp_ms"] <= after for r in records)
    assert records[1]["level_pct"] == 12
    assert records[3]["step_index"] == 2


def test_logger_default_sink_is_stderr(capsys, monkeypatch):
    monkeypatch.delenv("PROC_LOG_LEVEL", raising=False)
    StructuredLogger().info("to stderr", k=1)
    captured = capsys.readouterr()
    assert captured.out == ""
    record = json.loads(captured.err.strip())
    assert (record["level"], record["message"], record["k"]) == ("info", "to stderr", 1)


@pytest.mark.parametrize(
    "threshold, expected",
    [
        ("debug", ["debug", "info", "warning", "error"]),
        ("info", ["info", "warning", "error"]),
        ("WARNING", ["warning", "error"]),
        ("error", ["error"]),
    ],
)
def test_logger_level_threshold(monkeypatch, threshold, expected):
    monkeypatch.setenv("PROC_LOG_LEVEL", threshold)
    sink = io.StringIO()
    log = StructuredLogger(sink)
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [r["level"] for r in _records(sink)] == expected


def test_logger_exc_info_records_the_traceback(monkeypatch):
    monkeypatch.delenv("PROC_LOG_LEVEL", raising=False)
    sink = io.StringIO()
    log = StructuredLogger(sink)
    try:
        {}["missing_key"]
    except KeyError:
        log.error("lookup failed", exc_info=True, step_index=1)
    record = _records(sink)[0]
    assert "Traceback (most recent call last)" in record["traceback"]
    assert "KeyError: 'missing_key'" in record["traceback"]
    assert "exc_info" not in record
    assert record["step_index"] == 1


def test_logger_writes_unserialisable_fields_as_repr(monkeypatch):
    monkeypatch.delenv("PROC_LOG_LEVEL", raising=False)

    class Odd:
        def __repr__(self) -> str:
            return "<Odd thing>"

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    sink = io.StringIO()
    log = StructuredLogger(sink)
    log.info("values", odd=Odd(), arr=np.arange(3), scalar=np.float32(1.5), broken=Broken())
    record = _records(sink)[0]
    assert record["odd"] == "<Odd thing>"
    assert record["arr"] == repr(np.arange(3))
    assert isinstance(record["scalar"], str)
    assert "Broken" in record["broken"]


def test_stdlib_logging_bridge_writes_json_lines_to_stderr(tmp_path):
    script = textwrap.dedent(
        """
        import logging
        from procvision_algorithm_sdk.logger import install_logging_bridge

        install_logging_bridge()
        install_logging_bridge()  # idempotent: one handler, one line per record
        lib = logging.getLogger("thirdparty.lib")
        lib.debug("below the bridge level")
        lib.info("loaded %d weights", 42)
        lib.warning("slow device")
        try:
            1 / 0
        except ZeroDivisionError:
            lib.exception("inference failed")
        print("stdout stays clean of logs")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PROC_LOG_LEVEL"}
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "stdout stays clean of logs\n"
    records = [json.loads(line) for line in proc.stderr.splitlines()]
    assert [(r["level"], r["message"]) for r in records] == [
        ("info", "loaded 42 weights"),
        ("warning", "slow device"),
        ("error", "inference failed"),
    ]
    assert all(
        r["logger"] == "thirdparty.lib" and isinstance(r["timestamp_ms"], int) for r in records
    )
    assert "ZeroDivisionError" in records[2]["traceback"]


def test_diagnostics_publish_get():
    diag = Diagnostics()
    assert diag.get() == {}
    diag.publish("latency_ms", 12.5)
    diag.publish("count", 3)
    diag.publish("count", 4)
    snapshot = diag.get()
    assert snapshot == {"latency_ms": 12.5, "count": 4}
    snapshot["count"] = 100  # get returns a copy
    assert diag.get()["count"] == 4
