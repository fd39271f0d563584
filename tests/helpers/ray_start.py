"""`ray start` with a longer wait for the node's raylet to register (run as a script).

Ray's `ray start` gives a new node's raylet a fixed 30 s to register with the GCS, and the
raylet first waits for the node's dashboard agent, a Python process that needs longer than
that to import on a loaded 2-core machine. This runs the same `ray start` with Ray's node
lookup retried for up to PV_RAY_NODE_WAIT_S seconds instead.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import ray._private.services as services

_get_node = services.get_node


def _patient_get_node(*args: Any, **kwargs: Any) -> Any:
    deadline = time.monotonic() + float(os.environ.get("PV_RAY_NODE_WAIT_S", "180"))
    while True:
        try:
            return _get_node(*args, **kwargs)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


services.get_node = _patient_get_node

if __name__ == "__main__":
    from ray.scripts.scripts import main

    sys.argv = ["ray", *sys.argv[1:]]
    sys.exit(main())
