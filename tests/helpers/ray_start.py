"""`ray start` kept on loopback and patient with slow nodes (run as a script).

Loopback: `ray start` turns `--node-ip-address=127.0.0.1` (and a driver's 127.0.0.1 address)
into the address it sees towards the default route (Ray refuses loopback as a node address on
a machine with a network), so the cluster would talk over the machine's own LAN address.
`pin_to_loopback()` makes Ray's node-address lookup answer 127.0.0.1 in this process; the
processes a node starts get that address on their command lines, and
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 in their environment (Ray's switch that makes a node's
address loopback, meant for laptops) stops their own lookups from probing a route;
`allow_joining()` undoes the one thing that switch forbids, a second node joining.

Patient: `ray start` gives a new node's raylet a fixed 30 s to register with the GCS, and the
raylet first waits for the node's dashboard agent, a Python process that needs longer than
that to import on a loaded 2-core machine; Ray's node lookup is retried for up to
PV_RAY_NODE_WAIT_S seconds instead.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

LOOPBACK = "127.0.0.1"


def pin_to_loopback() -> None:
    """Make Ray's node-address lookup in this process answer 127.0.0.1 (no route probing)."""
    import ray._private.services as services

    def loopback(address: Any = None) -> str:
        return LOOPBACK

    services.get_node_ip_address = loopback


def patient_node_lookup() -> None:
    """Retry Ray's lookup of a starting node for up to PV_RAY_NODE_WAIT_S seconds."""
    import ray._private.services as services

    get_node = services.get_node

    def patient(*args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + float(os.environ.get("PV_RAY_NODE_WAIT_S", "180"))
        while True:
            try:
                return get_node(*args, **kwargs)
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    services.get_node = patient


def no_client_server() -> None:
    """Start no Ray Client server on the head (`ray start` starts one whenever grpc imports).

    The tests connect as drivers (`ray.init(address=...)`), never through Ray Client, so the
    server would be one more Python process importing Ray on every head.
    """
    import ray.scripts.scripts as scripts

    scripts.get_ray_client_dependency_error = lambda: ImportError("Ray Client is not used")


def allow_joining() -> None:
    """Let `ray start --address` join although RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0."""
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = True


if __name__ == "__main__":
    pin_to_loopback()
    allow_joining()
    no_client_server()
    patient_node_lookup()
    from ray.scripts.scripts import main

    sys.argv = ["ray", *sys.argv[1:]]
    sys.exit(main())
