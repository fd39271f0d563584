"""Board and screw inspection: step 1 locates the PCB, step 2 checks its six mounting screws."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from procvision_algorithm_sdk import BaseAlgorithm, Session, read_image_from_shared_memory
from procvision_algorithm_sdk.errors import IMAGE_LOAD_FAILED, INVALID_PARAMS, INVALID_PID

Image = npt.NDArray[np.uint8]

SUPPORTED_PIDS = ["p001", "p002"]
MODEL_VERSION = "screw-layout-v1"

# The product drawing: screw centres relative to the board, index 0..5 (top row, bottom row).
SCREW_LAYOUT = [
    (0.045, 0.07),
    (0.5, 0.07),
    (0.955, 0.07),
    (0.045, 0.93),
    (0.5, 0.93),
    (0.955, 0.93),
]
SCREW_RADIUS_REL = 0.021  # head radius as a fraction of the board width
MIN_BOARD_SIDE = 200  # pixels; anything smaller green is a label, not a board
NOMINAL_EXPOSURE_MS = 12.5
GREEN_MARGIN_AT_NOMINAL = 25.0  # how much G must exceed R at nominal exposure

STEPS: list[dict[str, Any]] = [
    {
        "index": 1,
        "name": "locate board",
        "params": [
            {
                "key": "roi",
                "type": "rect",
                "required": False,
                "description": "search only inside this region of the image",
            },
            {
                "key": "exposure",
                "type": "float",
                "min": 8.0,
                "max": 16.0,
                "default": 12.5,
                "unit": "ms",
                "description": "camera exposure; scales the green threshold",
            },
        ],
    },
    {
        "index": 2,
        "name": "check screws",
        "params": [
            {
                "key": "threshold",
                "type": "float",
                "min": 0.5,
                "max": 0.9,
                "default": 0.7,
                "description": "minimum screw score to count a screw as present",
            },
            {
                "key": "mode",
                "type": "enum",
                "choices": ["fast", "accurate"],
                "default": "fast",
                "description": "fast samples every other pixel; accurate refines each centre",
            },
        ],
    },
]


@dataclass(frozen=True)
class Board:
    """Where the board is in the frame and how sure we are."""

    x: int
    y: int
    width: int
    height: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form stored in the Session."""
        return {
            "x": self.x,
            "y": self.y,
            "width": self.width,
            "height": self.height,
            "score": self.score,
        }

    @classmethod
    def from_dict(cls, value: Any) -> Board | None:
        """Return a Board from its Session form, or None if the value is not one."""
        if not isinstance(value, dict):
            return None
        try:
            return cls(
                int(value["x"]),
                int(value["y"]),
                int(value["width"]),
                int(value["height"]),
                float(value.get("score", 0.0)),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def rect(self, label: str) -> dict[str, Any]:
        """Return the board as a contract Rect."""
        return {
            "x": self.x,
            "y": self.y,
            "width": self.width,
            "height": self.height,
            "label": label,
            "score": self.score,
        }


@dataclass(frozen=True)
class ScrewCheck:
    """The outcome of checking one expected screw position."""

    index: int
    present: bool
    score: float
    rect: dict[str, Any]


def _longest_run(active: npt.NDArray[np.bool_]) -> tuple[int, int]:
    """Return [start, stop) of the longest run of True values (0, 0 when there is none)."""
    if not active.any():
        return 0, 0
    padded = np.concatenate(([False], active, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    starts, stops = edges[0::2], edges[1::2]
    best = int(np.argmax(stops - starts))
    return int(starts[best]), int(stops[best])


def parse_rect(value: Any) -> tuple[int, int, int, int] | None:
    """Return (x, y, w, h) from a rect param given as a dict or "x,y,w,h"; None if absent/bad."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, str):
            parts = [int(float(p)) for p in value.split(",")]
            if len(parts) != 4:
                return None
            x, y, w, h = parts
        elif isinstance(value, dict):
            x, y = int(value["x"]), int(value["y"])
            w, h = int(value["width"]), int(value["height"])
        else:
            return None
    except (KeyError, TypeError, ValueError):
        return None
    if w <= 0 or h <= 0:
        return None
    return x, y, w, h


def locate_board(
    image: Image,
    exposure_ms: float = NOMINAL_EXPOSURE_MS,
    roi: tuple[int, int, int, int] | None = None,
) -> Board | None:
    """Find the green board: green mask, then the longest dense run of columns, then of rows."""
    height, width = image.shape[:2]
    ox, oy = 0, 0
    if roi is not None:
        rx, ry, rw, rh = roi
        ox, oy = max(rx, 0), max(ry, 0)
        x1, y1 = min(rx + rw, width), min(ry + rh, height)
        if x1 - ox < MIN_BOARD_SIDE or y1 - oy < MIN_BOARD_SIDE:
            return None
        image = image[oy:y1, ox:x1]
    # A longer exposure brightens everything, so the green margin grows with it.
    margin = GREEN_MARGIN_AT_NOMINAL * exposure_ms / NOMINAL_EXPOSURE_MS
    r = image[:, :, 0].astype(np.int16)
    g = image[:, :, 1].astype(np.int16)
    b = image[:, :, 2].astype(np.int16)
    mask = (g - r > margin) & (g - b > 0.6 * margin)
    columns = mask.sum(axis=0)
    if int(columns.max(initial=0)) < MIN_BOARD_SIDE:
        return None
    x0, x1 = _longest_run(columns >= 0.5 * columns.max())
    if x1 - x0 < MIN_BOARD_SIDE:
        return None
    rows = mask[:, x0:x1].sum(axis=1)
    y0, y1 = _longest_run(rows >= 0.5 * (x1 - x0))
    if y1 - y0 < MIN_BOARD_SIDE:
        return None
    fill = float(mask[y0:y1, x0:x1].mean())
    return Board(x0 + ox, y0 + oy, x1 - x0, y1 - y0, round(min(max(fill, 0.0), 1.0), 3))


def _gray(window: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    w = window.astype(np.float32)
    return (0.299 * w[..., 0] + 0.587 * w[..., 1] + 0.114 * w[..., 2]).astype(np.float32)


def _screw_score(image: Image, cx: float, cy: float, radius: float, step: int) -> float:
    """Return the share of metallic pixels on the head ring (between recess and rim)."""
    height, width = image.shape[:2]
    reach = 1.8 * radius
    x0, x1 = max(int(cx - reach), 0), min(int(np.ceil(cx + reach)) + 1, width)
    y0, y1 = max(int(cy - reach), 0), min(int(np.ceil(cy + reach)) + 1, height)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return 0.0
    window = image[y0:y1:step, x0:x1:step]
    ys, xs = np.mgrid[y0:y1:step, x0:x1:step]
    dx, dy = xs + 0.5 - cx, ys + 0.5 - cy
    dist = np.hypot(dx, dy)
    cheb = np.maximum(np.abs(dx), np.abs(dy))
    gray = _gray(window)
    # The board around the pad gives the local light level, so uneven lighting cancels out.
    band = (cheb >= 1.45 * radius) & (cheb <= 1.8 * radius)
    ring = (dist >= 0.55 * radius) & (dist <= 0.85 * radius)
    if not band.any() or not ring.any():
        return 0.0
    level = float(np.median(gray[band]))
    channels = window.astype(np.int16)
    spread = channels.max(axis=-1) - channels.min(axis=-1)
    metallic = (gray >= 1.3 * level + 8.0) & (spread <= 0.3 * channels.max(axis=-1) + 12)
    return float(metallic[ring].mean())


def _recess_visible(image: Image, cx: float, cy: float, radius: float) -> bool:
    """Return whether the head has a darker cross recess (a screw, not a bright blob)."""
    height, width = image.shape[:2]
    x0, x1 = max(int(cx - radius), 0), min(int(np.ceil(cx + radius)) + 1, width)
    y0, y1 = max(int(cy - radius), 0), min(int(np.ceil(cy + radius)) + 1, height)
    ys, xs = np.mgrid[y0:y1, x0:x1]
    dx, dy = xs + 0.5 - cx, ys + 0.5 - cy
    dist = np.hypot(dx, dy)
    gray = _gray(image[y0:y1, x0:x1])
    arms = ((np.abs(dx) <= 0.3 * radius) & (np.abs(dy) <= 0.05 * radius)) | (
        (np.abs(dy) <= 0.3 * radius) & (np.abs(dx) <= 0.05 * radius)
    )
    ring = (dist >= 0.55 * radius) & (dist <= 0.85 * radius)
    if not arms.any() or not ring.any():
        return False
    return float(gray[arms].mean()) < 0.8 * float(gray[ring].mean())


_REFINE_OFFSETS = sorted(
    ((dx, dy) for dx in range(-3, 4) for dy in range(-3, 4)),
    key=lambda d: (d[0] ** 2 + d[1] ** 2, d),
)


def check_screws(image: Image, board: Board, threshold: float, mode: str) -> list[ScrewCheck]:
    """Score every expected screw position of `board` and decide present/missing."""
    height, width = image.shape[:2]
    radius = SCREW_RADIUS_REL * board.width
    checks: list[ScrewCheck] = []
    for index, (fx, fy) in enumerate(SCREW_LAYOUT):
        cx, cy = board.x + fx * board.width, board.y + fy * board.height
        if mode == "accurate":
            # Placement tolerance: search a small neighbourhood at full resolution.
            # Nearest offsets first, so a tie keeps the drawing's position.
            best, best_xy = -1.0, (cx, cy)
            for ddx, ddy in _REFINE_OFFSETS:
                score = _screw_score(image, cx + ddx, cy + ddy, radius, step=1)
                if score > best:
                    best, best_xy = score, (cx + ddx, cy + ddy)
            cx, cy = best_xy
            score = best if _recess_visible(image, cx, cy, radius) else 0.5 * best
        else:
            score = _screw_score(image, cx, cy, radius, step=2)
        x0 = min(max(round(cx - radius), 0), width - 1)
        y0 = min(max(round(cy - radius), 0), height - 1)
        x1 = min(max(round(cx + radius), x0 + 1), width)
        y1 = min(max(round(cy + radius), y0 + 1), height)
        present = score >= threshold
        score = round(min(max(score, 0.0), 1.0), 3)
        rect = {
            "x": x0,
            "y": y0,
            "width": x1 - x0,
            "height": y1 - y0,
            "label": "screw" if present else "missing_screw",
            "score": score if present else round(1.0 - score, 3),
        }
        checks.append(ScrewCheck(index, present, score, rect))
    return checks


def _error(message: str, code: str) -> dict[str, Any]:
    return {"status": "ERROR", "message": message, "error_code": code}


class AlgorithmExample(BaseAlgorithm):
    """Two-step PCB inspection: locate the board, then check its mounting screws."""

    def __init__(self) -> None:
        super().__init__()
        self._supported_pids = list(SUPPORTED_PIDS)
        self._step_started: dict[int, float] = {}

    def setup(self) -> None:
        """Load the product layout (the 'model' of this example)."""
        self._model_version = MODEL_VERSION
        self._resources_loaded = True
        self.logger.info("setup done", model_version=self._model_version)

    def teardown(self) -> None:
        """Forget the loaded layout."""
        self._resources_loaded = False
        self.logger.info("teardown done")

    def on_step_start(self, step_index: int, session: Session, context: dict[str, Any]) -> None:
        """Start the step timer; a fresh step 1 forgets an earlier board location."""
        self._step_started[step_index] = time.perf_counter()
        if step_index == 1 and session.exists("board"):
            session.delete("board")
        self.logger.debug("step start", step_index=step_index, session_id=session.id)

    def on_step_finish(self, step_index: int, session: Session, result: dict[str, Any]) -> None:
        """Publish the step's wall time and verdict."""
        started = self._step_started.pop(step_index, None)
        if started is not None:
            latency = round((time.perf_counter() - started) * 1000.0, 3)
            self.diagnostics.publish(f"step{step_index}_latency_ms", latency)
        data = result.get("data") if isinstance(result, dict) else None
        verdict = data.get("result_status") if isinstance(data, dict) else None
        self.logger.info("step finish", step_index=step_index, result_status=verdict)

    def reset(self, session: Session) -> None:
        """Re-inspection: the board must be located again."""
        session.delete("board")
        self._step_started.clear()
        self.logger.info("reset", session_id=session.id)

    def get_info(self) -> dict[str, Any]:
        """Return the package metadata and the two steps with their params."""
        return {
            "name": "algorithm-example",
            "version": "1.0.0",
            "description": "Locate a PCB and check its six mounting screws",
            "supported_pids": list(self._supported_pids),
            "steps": [dict(step) for step in STEPS],
        }

    def _read(self, shared_mem_id: str, image_meta: dict[str, Any]) -> Image | None:
        image = read_image_from_shared_memory(shared_mem_id, image_meta)
        if image is None or getattr(image, "ndim", 0) != 3 or image.shape[2] != 3:
            return None
        return np.asarray(image, dtype=np.uint8)

    def _check_call(self, step_index: int, pid: str) -> dict[str, Any] | None:
        if pid not in self._supported_pids:
            return _error(f"pid {pid!r} is not supported", INVALID_PID)
        if step_index not in (1, 2):
            return _error(f"unknown step {step_index}", INVALID_PARAMS)
        return None

    def _locate(self, image: Image, user_params: dict[str, Any]) -> Board | None:
        exposure = float(user_params.get("exposure", NOMINAL_EXPOSURE_MS))
        return locate_board(image, exposure, parse_rect(user_params.get("roi")))

    def pre_execute(
        self,
        step_index: int,
        pid: str,
        session: Session,
        user_params: dict[str, Any],
        shared_mem_id: str,
        image_meta: dict[str, Any],
    ) -> dict[str, Any]:
        """Step 1: locate the board for calibration. Step 2: confirm a board location exists."""
        started = time.perf_counter()
        problem = self._check_call(step_index, pid)
        if problem is not None:
            return problem
        image = self._read(shared_mem_id, image_meta)
        if image is None:
            return _error("image not available", IMAGE_LOAD_FAILED)
        if step_index == 1:
            board = self._locate(image, user_params)
            # None records "looked and found nothing", so step 2 does not search again.
            session.set("board", board.to_dict() if board is not None else None)
        else:
            board = Board.from_dict(session.get("board"))
        latency = round((time.perf_counter() - started) * 1000.0, 3)
        if board is None:
            return {
                "status": "OK",
                "message": "board not found",
                "data": {"calibration_rects": []},
                "debug": {"latency_ms": latency},
            }
        return {
            "status": "OK",
            "message": "board located",
            "data": {"calibration_rects": [board.rect("board")]},
            "debug": {"latency_ms": latency},
        }

    def execute(
        self,
        step_index: int,
        pid: str,
        session: Session,
        user_params: dict[str, Any],
        shared_mem_id: str,
        image_meta: dict[str, Any],
    ) -> dict[str, Any]:
        """Step 1: OK iff a board is found. Step 2: NG with one defect per missing screw."""
        started = time.perf_counter()
        problem = self._check_call(step_index, pid)
        if problem is not None:
            return problem
        image = self._read(shared_mem_id, image_meta)
        if image is None:
            return _error("image not available", IMAGE_LOAD_FAILED)
        if step_index == 1:
            result = self._execute_locate(image, session, user_params)
        else:
            result = self._execute_screws(image, session, user_params)
        result["data"].setdefault("debug", {})["latency_ms"] = round(
            (time.perf_counter() - started) * 1000.0, 3
        )
        return result

    def _execute_locate(
        self, image: Image, session: Session, user_params: dict[str, Any]
    ) -> dict[str, Any]:
        if session.exists("board"):
            board = Board.from_dict(session.get("board"))
        else:
            board = self._locate(image, user_params)
            session.set("board", board.to_dict() if board is not None else None)
        self.diagnostics.publish("board_found", board is not None)
        if board is None:
            self.logger.info("board not found")
            return {
                "status": "OK",
                "message": "board not found",
                "data": {"result_status": "NG", "ng_reason": "board not found", "defect_rects": []},
            }
        self.logger.info("board located", **board.to_dict())
        return {
            "status": "OK",
            "message": "board located",
            "data": {"result_status": "OK", "position_rects": [board.rect("board")]},
        }

    def _execute_screws(
        self, image: Image, session: Session, user_params: dict[str, Any]
    ) -> dict[str, Any]:
        threshold = float(user_params.get("threshold", 0.7))
        mode = str(user_params.get("mode", "fast"))
        if session.exists("board"):
            board = Board.from_dict(session.get("board"))
        else:
            self.logger.warning("no board location in the session; locating again")
            board = locate_board(image)
            session.set("board", board.to_dict() if board is not None else None)
        if board is None:
            self.diagnostics.publish("screws_missing", None)
            return {
                "status": "OK",
                "message": "board not found",
                "data": {"result_status": "NG", "ng_reason": "board not found", "defect_rects": []},
            }
        checks = check_screws(image, board, threshold, mode)
        missing = [c for c in checks if not c.present]
        found = [c for c in checks if c.present]
        self.diagnostics.publish("screws_found", len(found))
        self.diagnostics.publish("screws_missing", len(missing))
        debug = {"mode": mode, "threshold": threshold, "scores": [c.score for c in checks]}
        if missing:
            indexes = [c.index for c in missing]
            self.logger.info("screws missing", indexes=indexes)
            noun = "screw" if len(missing) == 1 else "screws"
            return {
                "status": "OK",
                "message": f"{len(missing)} {noun} missing",
                "data": {
                    "result_status": "NG",
                    "ng_reason": f"{len(missing)} {noun} missing",
                    "defect_rects": [c.rect for c in missing],
                    "position_rects": [c.rect for c in found],
                    "debug": debug,
                },
            }
        return {
            "status": "OK",
            "message": "all screws present",
            "data": {
                "result_status": "OK",
                "position_rects": [c.rect for c in found],
                "debug": debug,
            },
        }
