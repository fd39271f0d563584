"""Regenerate the sample images, guide_info.json and ground_truth.json (deterministic).

A 640x480 board with four parts; the guide image is the assembled board. Current images are the
same board under slightly different light with sensor noise, some with parts missing (the empty
seat shows the board's colour and a dark mounting hole).

    python images/generate.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
W, H = 640, 480
PARTS = {
    "1": (60, 70, 120, 90, (200, 40, 40)),
    "2": (400, 60, 150, 110, (30, 60, 200)),
    "3": (90, 300, 100, 120, (230, 200, 30)),
    "4": (380, 310, 180, 80, (240, 240, 240)),
}
SAMPLES = {
    "cur_ok_01.png": ((), 0),
    "cur_ok_02.jpg": ((), 12),
    "cur_ng_2.png": (("2",), -6),
    "cur_ng_1_4.png": (("1", "4"), 8),
    "cur_ng_3.jpg": (("3",), 0),
}


def board(missing: tuple[str, ...], light: int, seed: int) -> np.ndarray:
    img = np.zeros((H, W, 3), dtype=np.int16)
    img[:] = (40, 110, 60)
    img[::40, :] = (30, 90, 50)  # traces
    for label, (x, y, w, h, colour) in PARTS.items():
        if label in missing:
            cx, cy = x + w // 2, y + h // 2
            img[cy - 6 : cy + 6, cx - 6 : cx + 6] = (15, 20, 15)  # the empty mounting hole
            continue
        img[y : y + h, x : x + w] = colour
        img[y + h // 3 : y + 2 * h // 3, x + w // 4 : x + 3 * w // 4] = (60, 60, 60)
    rng = np.random.default_rng(seed)
    img += rng.normal(0, 3, img.shape).astype(np.int16) + light
    return np.clip(img, 0, 255).astype(np.uint8)


def main() -> None:
    Image.fromarray(board((), 0, 1)).save(HERE / "guide.png")
    guide_info = [
        {"label": label, "posList": [{"x": x, "y": y, "width": w, "height": h}]}
        for label, (x, y, w, h, _c) in PARTS.items()
    ]
    (HERE / "guide_info.json").write_text(json.dumps(guide_info, indent=2) + "\n")
    truth = {}
    for number, (name, (missing, light)) in enumerate(sorted(SAMPLES.items()), start=2):
        image = Image.fromarray(board(missing, light, number))
        if name.endswith(".jpg"):
            image.save(HERE / name, quality=92)
        else:
            image.save(HERE / name)
        truth[name] = {
            "result_status": "NG" if missing else "OK",
            "missing": sorted(missing),
        }
    document = {
        "guide_image": "guide.png",
        "guide_info": "guide_info.json",
        "step_index": 1,
        "step_desc": "步骤 1: 安装四个零件",
        "samples": truth,
    }
    (HERE / "ground_truth.json").write_text(
        json.dumps(document, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )


if __name__ == "__main__":
    main()
