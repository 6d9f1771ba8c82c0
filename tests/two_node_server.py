"""A two-node local Ray cluster (ray.cluster_utils.Cluster: two raylets on this machine) with attn-serve
on it, one replica per node. ``python tests/two_node_server.py ARTIFACT_DIR --http-port P --grpc-port Q``;
SIGTERM stops the server and both nodes."""
from __future__ import annotations

import signal
import sys

from ray.cluster_utils import Cluster


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        from serving.cli import main as attn_serve

        sys.argv = ["attn-serve", *sys.argv[1:], "--replicas", "2", "--max-replicas-per-node", "1",
                    "--ray-address", cluster.address]
        attn_serve()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
