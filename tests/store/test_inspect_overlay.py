"""Issue 16 item 8: `procvision-runner inspect --save-overlay DIR` writes one PNG per step.

A real store with the example package installed and active (helpers/station.py), the real
`procvision-runner` in a subprocess, the example's NG image: one overlay per image and step,
each the image under a banner in the verdict's colour, the missing screws drawn in red.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.package_zips import EXAMPLE
from helpers.station import Stations, cli
from PIL import Image

from procvision_runner.overlay import BANNER, COLORS

pytestmark = pytest.mark.slow

NG_IMAGE = EXAMPLE / "images" / "ng_missing_1.png"
OK_IMAGE = EXAMPLE / "images" / "ok_01.png"


def _banner_colour(png: Path, image_height: int) -> tuple[int, ...]:
    with Image.open(png) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.shape[0] > image_height  # the banner is a strip above the image
    return tuple(int(v) for v in pixels[2, 2])


def test_inspect_saves_one_overlay_per_image_and_step(stations: Stations, tmp_path: Path) -> None:
    store = stations.copy("1.0.0", tmp_path / "store")
    out = tmp_path / "overlays" / "new"  # made if missing
    args = ["inspect", "--pid", "p001", "--step", "1", "--step", "2"]
    images = ["--image", str(OK_IMAGE), "--image", str(NG_IMAGE)]
    r = cli(store, *args, *images, "--save-overlay", str(out), "--json")
    assert r.returncode == 0, r.stderr
    results = [json.loads(line) for line in r.stdout.splitlines()]  # stdout stays JSON lines
    assert len(results) == 4
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "ng_missing_1-step1.png",
        "ng_missing_1-step2.png",
        "ok_01-step1.png",
        "ok_01-step2.png",
    ]
    assert f"overlay saved to {out / 'ok_01-step1.png'}" in r.stderr
    height = np.asarray(Image.open(OK_IMAGE)).shape[0]
    assert _banner_colour(out / "ok_01-step2.png", height) == BANNER["OK"]
    assert _banner_colour(out / "ng_missing_1-step2.png", height) == BANNER["NG"]
    with Image.open(out / "ng_missing_1-step2.png") as im:
        pixels = np.asarray(im.convert("RGB"))
    red = (pixels == np.array(COLORS["defect_rects"], np.uint8)).all(axis=-1)
    assert red[height // 10 :].sum() > 500  # the missing screws' rects, below the banner


def test_inspect_refuses_an_overlay_dir_that_is_a_file(stations: Stations, tmp_path: Path) -> None:
    store = stations.copy("1.0.0", tmp_path / "store")
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    r = cli(
        store, "inspect", "--pid", "p001", "--step", "1", "--image", str(OK_IMAGE),
        "--save-overlay", str(blocker),
    )  # fmt: skip
    assert r.returncode == 1
    assert "error 9999: --save-overlay" in r.stderr
