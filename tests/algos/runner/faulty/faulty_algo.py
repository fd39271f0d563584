"""Runner test algorithm: user_params["mode"] picks a behaviour, including every fault."""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from procvision_algorithm_sdk import BaseAlgorithm, FatalError, read_image_from_shared_memory

_MANIFEST = json.loads((Path(__file__).parent / "manifest.json").read_text())


class Faulty(BaseAlgorithm):
    """Echoes its tag and the frame it read; faults on request."""

    def get_info(self) -> dict[str, Any]:
        return {
            "name": _MANIFEST["name"],
            "version": _MANIFEST["version"],
            "supported_pids": _MANIFEST["supported_pids"],
            "steps": _MANIFEST["steps"],
        }

    def pre_execute(self, step_index, pid, session, user_params, shared_mem_id, image_meta):
        image = read_image_from_shared_memory(shared_mem_id, image_meta)
        session.set(f"pre_{step_index}", int(image[0, 0, 0]))
        return {"status": "OK", "message": "ready", "data": {}}

    def execute(self, step_index, pid, session, user_params, shared_mem_id, image_meta):
        mode = user_params.get("mode", "ok")
        image = read_image_from_shared_memory(shared_mem_id, image_meta)
        data: dict[str, Any] = {
            "result_status": "OK",
            "tag": user_params.get("tag"),
            "pixel": int(image[0, 0, 0]),
            "shape": list(image.shape),
            "worker_pid": os.getpid(),
            "user_params": user_params,
        }
        if mode == "sleep":
            time.sleep(60)
        elif mode == "busy":
            while True:
                pass
        elif mode == "segfault":
            ctypes.string_at(0)
        elif mode == "exit":
            os._exit(7)
        elif mode == "fatal":
            raise FatalError("the device is gone")
        elif mode == "spam":
            block = "x" * 1023 + "\n"
            for _ in range(10 * 1024):  # 10 MB to stdout and 10 MB to stderr
                sys.stdout.write(block)
                sys.stderr.write(block)
            sys.stdout.flush()
        elif mode == "defects":
            rect = {"x": 0, "y": 0, "width": 1, "height": 1}
            data.update(
                result_status="NG", ng_reason="many", defect_rects=[rect] * user_params["count"]
            )
        elif mode == "bad":
            data["result_status"] = "MAYBE"
        elif mode == "remember":
            session.set("remembered", user_params.get("tag"))
        elif mode == "recall":
            data["recalled"] = session.get("remembered")
            data["pre"] = session.get(f"pre_{step_index}")
        elif mode == "log":
            self.logger.info("hello from execute", tag=user_params.get("tag"))
        elif mode == "print":  # a whole line, then one without its newline
            print("printed", user_params.get("tag"))
            sys.stderr.write(f"partial {user_params.get('tag')}")
        elif mode == "grow":  # keep `count` MB more, touched (resident)
            self.hoard = getattr(self, "hoard", [])
            for _ in range(user_params["count"] // 16):  # in steps: pongs keep flowing
                self.hoard.append(bytearray(b"\x01") * (16 << 20))
        elif mode == "balloon":  # grow by 16 MB steps up to `count` MB, then hang
            hoard = []
            for _ in range(user_params["count"] // 16):
                hoard.append(bytearray(b"\x01") * (16 << 20))
                time.sleep(0.02)
            time.sleep(60)
        return {"status": "OK", "data": data}


class SetupExit(Faulty):
    """Dies inside setup."""

    def setup(self) -> None:
        os._exit(5)


class SetupRaise(Faulty):
    """Raises inside setup."""

    def setup(self) -> None:
        raise RuntimeError("model file is corrupt")


class SlowSetup(Faulty):
    """Loads a "model" for longer than the adapter's heartbeat watchdog allows in silence."""

    def setup(self) -> None:
        time.sleep(float(os.environ.get("PROC_TEST_SETUP_S", "3")))


class SpawnsHelper(Faulty):
    """Starts a helper process in setup (a camera daemon, a tool) that inherits stderr."""

    def setup(self) -> None:
        import subprocess

        self.helper = subprocess.Popen(["sleep", "300"])
        record = Path(os.environ["PROC_TEST_HELPER_DIR"]) / f"helper-{self.helper.pid}"
        record.write_text(str(os.getpid()))


class ClosesPipes(Faulty):
    """execute closes every inherited fd (as a vendor SDK "daemonizing" might), then hangs on."""

    def execute(self, step_index, pid, session, user_params, shared_mem_id, image_meta):
        os.closerange(3, 4096)
        time.sleep(3600)
        return {"status": "OK", "data": {"result_status": "OK"}}


class SetupFailsWhileFlagged(Faulty):
    """setup raises while the file named by PROC_TEST_FAIL_FLAG exists (a broken model store)."""

    def setup(self) -> None:
        if Path(os.environ["PROC_TEST_FAIL_FLAG"]).exists():
            raise RuntimeError("model store unavailable")


class SpawnsEscapingHelpers(Faulty):
    """setup starts helpers that leave the worker's process group in every usual way.

    PROC_TEST_HELPERS lists the kinds: `group` (stays in the worker's group), `session`
    (start_new_session=True), `daemon` (setsid'd grandchild of a shell that exits at once, so it
    is orphaned immediately), `scrubbed` (new session and an empty environment). Each helper's
    pid is written to PROC_TEST_HELPER_DIR as `<kind>-<pid>`.
    """

    def setup(self) -> None:
        import subprocess

        out = Path(os.environ["PROC_TEST_HELPER_DIR"])
        quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL}
        for kind in os.environ.get("PROC_TEST_HELPERS", "session").split(","):
            if kind == "daemon":
                shell = subprocess.run(
                    ["sh", "-c", "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!"],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                pid = int(shell.stdout.strip())
            else:
                helper = subprocess.Popen(
                    ["sleep", "300"],
                    start_new_session=kind != "group",
                    env={} if kind == "scrubbed" else None,
                    **quiet,
                )
                pid = helper.pid
            (out / f"{kind}-{pid}").write_text(str(os.getpid()))
