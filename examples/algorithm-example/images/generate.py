"""Generate the example's sample images and their ground truth (deterministic).

Usage: python generate.py [--out DIR]   (default: the folder this script is in)

Each image is a 1920x1200 RGB frame of a green PCB on a dark fixture, lit unevenly, with six
mounting screws at fixed positions relative to the board. Some boards miss screws (a dark drilled
hole shows instead); one frame has no board at all. The layout numbers below are the product's
drawing, which the algorithm knows too; this script does not import the algorithm.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 1920, 1200
SEED = 20240611

# Screw centres relative to the board (x, y), index 0..5: top row left to right, then bottom row.
SCREW_LAYOUT = [
    (0.045, 0.07),
    (0.5, 0.07),
    (0.955, 0.07),
    (0.045, 0.93),
    (0.5, 0.93),
    (0.955, 0.93),
]
SCREW_RADIUS_REL = 0.021  # screw head radius as a fraction of the board width

BACKGROUND = (28, 30, 33)
BOARD_GREEN = (34, 118, 56)
TRACE_GREEN = (52, 150, 74)
CHIP_BLACK = (24, 24, 27)
SILK_WHITE = (222, 222, 218)
PAD_TIN = (168, 168, 158)
HOLE_DARK = (18, 18, 20)
RECESS_DARK = (62, 62, 66)


@dataclass(frozen=True)
class Sample:
    """One sample frame: where the board is, how it is lit, which screws are missing."""

    file: str
    board: tuple[int, int, int, int] | None  # x, y, width, height
    light: float = 1.0  # global illumination factor
    gradient: float = 0.0  # left-to-right illumination slope (fraction of light)
    missing: tuple[int, ...] = ()
    noise: float = 0.0  # sensor noise sigma (only used for the JPEG frames)
    sticker: tuple[int, int, int, int] | None = None  # a small green label on the fixture


SAMPLES = [
    Sample("ok_01.png", (410, 250, 1100, 700)),
    Sample("ok_02.png", (220, 140, 1040, 660), light=0.82, gradient=0.15),
    Sample("ok_03.png", (700, 420, 1160, 720), light=1.12, gradient=-0.1),
    Sample("ok_04.jpg", (480, 300, 1100, 700), light=0.95, noise=3.0),
    Sample("ng_missing_1.png", (380, 230, 1100, 700), missing=(2,)),
    Sample("ng_missing_2.png", (560, 330, 1080, 690), light=0.9, gradient=0.1, missing=(0, 4)),
    Sample("ng_missing_1.jpg", (300, 260, 1120, 710), light=1.05, noise=3.0, missing=(3,)),
    Sample("no_board.png", None, light=0.95, sticker=(1500, 180, 90, 60)),
]


def _fill(img: np.ndarray, x: int, y: int, w: int, h: int, colour: tuple[int, int, int]) -> None:
    img[max(y, 0) : max(y + h, 0), max(x, 0) : max(x + w, 0)] = colour


def _disc_distance(cx: float, cy: float, radius: float) -> tuple[slice, slice, np.ndarray]:
    """Return the window around a centre and each pixel's distance to it."""
    x0, x1 = int(np.floor(cx - radius - 2)), int(np.ceil(cx + radius + 2))
    y0, y1 = int(np.floor(cy - radius - 2)), int(np.ceil(cy + radius + 2))
    ys, xs = np.mgrid[y0:y1, x0:x1]
    dist = np.hypot(xs + 0.5 - cx, ys + 0.5 - cy)
    return slice(y0, y1), slice(x0, x1), dist


def _draw_screw(img: np.ndarray, cx: float, cy: float, r: float, present: bool) -> None:
    sy, sx, dist = _disc_distance(cx, cy, 1.3 * r)
    win = img[sy, sx]
    win[(dist >= 1.0 * r) & (dist < 1.3 * r)] = PAD_TIN
    if not present:
        win[dist < 0.95 * r] = HOLE_DARK
        return
    head = dist < r
    # Domed head: bright centre, darker rim, slightly cool metal.
    shade = 222.0 - 52.0 * (dist / r) ** 2
    metal = np.stack([shade, shade, shade + 6.0], axis=-1)
    win[head] = np.clip(metal[head], 0, 255).astype(np.uint8)
    ys, xs = np.mgrid[sy, sx]
    dx, dy = xs + 0.5 - cx, ys + 0.5 - cy
    half_len, half_w = 0.42 * r, 0.07 * r
    recess = ((np.abs(dx) <= half_len) & (np.abs(dy) <= half_w)) | (
        (np.abs(dy) <= half_len) & (np.abs(dx) <= half_w)
    )
    win[recess] = RECESS_DARK


def screw_centres(board: tuple[int, int, int, int]) -> list[tuple[float, float]]:
    """Return the six screw centres (pixels) of a board at x, y, width, height."""
    bx, by, bw, bh = board
    return [(bx + fx * bw, by + fy * bh) for fx, fy in SCREW_LAYOUT]


def _draw_board(img: np.ndarray, sample: Sample, rng: np.random.Generator) -> None:
    assert sample.board is not None
    bx, by, bw, bh = sample.board
    _fill(img, bx, by, bw, bh, BOARD_GREEN)
    # Components stay in the middle of the board, clear of the screw pads.
    inner_x0, inner_x1 = bx + int(0.15 * bw), bx + int(0.85 * bw)
    inner_y0, inner_y1 = by + int(0.2 * bh), by + int(0.8 * bh)
    for _ in range(9):
        y = int(rng.integers(inner_y0, inner_y1))
        _fill(img, inner_x0, y, inner_x1 - inner_x0, 4, TRACE_GREEN)
    for _ in range(7):
        x = int(rng.integers(inner_x0, inner_x1))
        _fill(img, x, inner_y0, 4, inner_y1 - inner_y0, TRACE_GREEN)
    for _ in range(4):
        w, h = int(rng.integers(90, 220)), int(rng.integers(70, 160))
        x = int(rng.integers(inner_x0, inner_x1 - w))
        y = int(rng.integers(inner_y0, inner_y1 - h))
        _fill(img, x, y, w, h, CHIP_BLACK)
        _fill(img, x + 8, y + 8, min(60, w - 16), 10, SILK_WHITE)
    r = SCREW_RADIUS_REL * bw
    for index, (cx, cy) in enumerate(screw_centres(sample.board)):
        _draw_screw(img, cx, cy, r, present=index not in sample.missing)


def render(sample: Sample, rng: np.random.Generator) -> np.ndarray:
    """Return the H x W x 3 uint8 RGB frame of one sample."""
    img = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    img[:] = BACKGROUND
    # A fixture clamp on the left edge: grey metal, not green.
    _fill(img, 40, 520, 120, 160, (92, 94, 98))
    if sample.sticker is not None:
        _fill(img, *sample.sticker, BOARD_GREEN)
    if sample.board is not None:
        _draw_board(img, sample, rng)
    columns = np.linspace(-0.5, 0.5, WIDTH, dtype=np.float32)
    light = sample.light * (1.0 + sample.gradient * 2.0 * columns)
    out = img.astype(np.float32) * light[None, :, None]
    if sample.noise > 0:
        out += rng.normal(0.0, sample.noise, size=out.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def ground_truth_entry(sample: Sample) -> dict[str, object]:
    """Return the expected verdicts of one sample."""
    if sample.board is None:
        return {
            "step1": "NG",
            "step2": "NG",
            "board": None,
            "screws": [],
            "missing_screws": [],
        }
    bx, by, bw, bh = sample.board
    return {
        "step1": "OK",
        "step2": "NG" if sample.missing else "OK",
        "board": {"x": bx, "y": by, "width": bw, "height": bh},
        "screws": [[round(cx, 1), round(cy, 1)] for cx, cy in screw_centres(sample.board)],
        "missing_screws": sorted(sample.missing),
    }


def generate(out_dir: Path) -> dict[str, object]:
    """Write every sample image and ground_truth.json into `out_dir`; return the ground truth."""
    out_dir.mkdir(parents=True, exist_ok=True)
    images: dict[str, object] = {}
    for number, sample in enumerate(SAMPLES):
        rng = np.random.default_rng(SEED + number)
        pixels = render(sample, rng)
        path = out_dir / sample.file
        if sample.file.endswith(".jpg"):
            Image.fromarray(pixels).save(path, format="JPEG", quality=92)
        else:
            Image.fromarray(pixels).save(path, format="PNG", optimize=True)
        images[sample.file] = ground_truth_entry(sample)
    truth: dict[str, object] = {
        "width": WIDTH,
        "height": HEIGHT,
        "screw_layout": [list(p) for p in SCREW_LAYOUT],
        "screw_radius_rel": SCREW_RADIUS_REL,
        "images": images,
    }
    (out_dir / "ground_truth.json").write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    return truth


def main() -> None:
    """Command-line entry: generate into --out (default: this folder)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    generate(args.out)
    print(f"wrote {len(SAMPLES)} images and ground_truth.json to {args.out}")


if __name__ == "__main__":
    main()
