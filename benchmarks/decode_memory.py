"""Peak memory of the HTTP service while 8 clients upload a 7999 x 7999 PNG to /inspect at once.

Three ways of decoding, each in a fresh process (its peak RSS is the process's VmHWM), side by
side in one run: `pool` decodes on the shared worker pool with no budget (the code before issue
13 item 6), `pool+budget` adds the pixel budget on that pool (the issue's first trial),
`dedicated+budget` is the service as built: the budget and one dedicated decode thread. The
pid is not routed, so the Runner answers 1001 right after the decode: what is measured is the
decoding. Prints MB above the idle baseline and the ratios to `pool`.

    .venv/bin/python benchmarks/decode_memory.py [--clients 8] [--side 7999]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

MODES = ("pool", "pool+budget", "dedicated+budget")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(mode: str, png_path: str, clients: int) -> dict[str, float]:
    """Serve in this process, fire the uploads, report baseline and peak RSS (MB)."""
    import httpx

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from helpers.inprocess_server import InProcessServer

    from procvision_runner.config import RunnerConfig
    from procvision_runner.runner import Runner
    from procvision_runner.service import ServiceConfig, create_app
    from procvision_runner.store import PackageManager, PackageStore

    data = Path(png_path).read_bytes()
    cfg = ServiceConfig()
    if mode == "pool":
        cfg.decode_budget_pixels = 10**12
    with tempfile.TemporaryDirectory() as tmp, Runner(RunnerConfig(warmup_calls=0)) as runner:
        manager = PackageManager(PackageStore(Path(tmp) / "store").open(), runner)
        app = create_app(manager, runner, cfg, start_packages=False)
        if mode.startswith("pool"):
            # The compared variant: the same routes and budget, decoding on the shared pool
            # (re-initialised in place because the routes hold this very decoder).
            decoder = app.state.decoder
            decoder.close()
            decoder.__init__(
                cfg.decode_budget_pixels,
                cfg.decode_wait_ms * 100,
                cfg.max_image_pixels,
                dedicated_thread=False,
            )
        else:
            app.state.decoder.wait_s = cfg.decode_wait_ms * 100 / 1000.0  # count, never 503
        with InProcessServer(app) as server:
            baseline = _status_kb("VmRSS")
            statuses: list[int] = []

            def upload() -> None:
                r = httpx.post(
                    f"{server.url}/inspect",
                    data={"pid": "unrouted", "step_index": "1"},
                    files={"image": ("big.png", data, "image/png")},
                    timeout=600.0,
                )
                statuses.append(r.status_code)

            threads = [threading.Thread(target=upload) for _ in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(600)
    peak = _status_kb("VmHWM")
    return {"baseline_mb": baseline / 1024, "peak_mb": peak / 1024, "ok": statuses.count(200)}


def main() -> None:
    """Run each mode in its own process and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--side", type=int, default=7999)
    parser.add_argument("--child", choices=MODES)
    parser.add_argument("--png")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.png, args.clients)))
        return
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "big.png"
        buf = io.BytesIO()
        Image.new("RGB", (args.side, args.side), (40, 90, 160)).save(buf, "PNG", compress_level=9)
        png.write_bytes(buf.getvalue())
        print(f"{args.clients} clients, {args.side}x{args.side} PNG of {png.stat().st_size} B")
        rows = {}
        for mode in MODES:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    mode,
                    "--png",
                    str(png),
                    "--clients",
                    str(args.clients),
                ],
                capture_output=True,
                text=True,
                timeout=1800,
                check=True,
            )
            rows[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    base = rows["pool"]["peak_mb"] - rows["pool"]["baseline_mb"]
    head = ("mode", "baseline MB", "peak MB", "above MB", "vs pool", "200s")
    print(f"{head[0]:<18} {head[1]:>12} {head[2]:>9} {head[3]:>9} {head[4]:>8} {head[5]:>5}")
    for mode, row in rows.items():
        above = row["peak_mb"] - row["baseline_mb"]
        print(
            f"{mode:<18} {row['baseline_mb']:>12.0f} {row['peak_mb']:>9.0f} {above:>9.0f} "
            f"{above / base:>8.2f} {row['ok']:>5}"
        )


if __name__ == "__main__":
    main()
