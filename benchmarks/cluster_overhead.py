"""What `run --cluster` costs over a local `run`, and whether it changes the figures.

The same small quick sweep, measured locally and through a local Ray cluster of one labelled node
(on this machine), in turn (local, cluster, local, ...), each time into a fresh database, so that
drift hits both alike. Reported: each way's wall time (median and range over the repeats; the
cluster's includes joining it, probing the node and streaming every cell back, not starting it),
and, cell by cell, the cluster's median latency over the local one's (the same sweep code measures
both, so the ratio should sit at 1 within the cells' noise).

    .venv/bin/python benchmarks/cluster_overhead.py [--repeats 3] [--models squeezenet1_1,mobilenet_v3_small]

Needs Ray (pip install 'dnnbench[cluster]'). Keep the machine otherwise quiet while it runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from common import cells, dnnbench_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="squeezenet1_1,mobilenet_v3_small")
    parser.add_argument("--batch-sizes", default="1,4")
    args = parser.parse_args()
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes.add_node(num_cpus=1, labels={"dnnbench-machine": "node"})
    nodes.wait_for_nodes()
    models = args.models.split(",")
    common = ["--quick", "--threads", "2", "--on-busy", "measure"]
    walls: dict[str, list[float]] = {"local": [], "cluster": []}
    ratios: list[float] = []
    load = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            load.append(os.getloadavg()[0])
            local, remote = Path(tmp) / f"local{i}.db", Path(tmp) / f"cluster{i}.db"
            walls["local"].append(dnnbench_run(local, models, args.batch_sizes, *common, "--machine", "node"))
            walls["cluster"].append(dnnbench_run(remote, models, args.batch_sizes, *common, "--cluster", nodes.address,
                                                 "--machines", "node"))
            here = {(c["model"], c["batch_size"]): c for c in cells(local) if c["status"] == "ok"}
            there = {(c["model"], c["batch_size"]): c for c in cells(remote) if c["status"] == "ok"}
            if set(here) != set(there):
                raise SystemExit(f"the two sweeps measured different cells: {sorted(set(here) ^ set(there))}")
            ratios += [there[k]["latency_median_s"] / here[k]["latency_median_s"] for k in here]
    nodes.shutdown()
    for way, values in walls.items():
        print(f"{way:8s} wall time: median {statistics.median(values):.1f} s "
              f"(range {min(values):.1f} to {max(values):.1f} s, {len(values)} sweeps)")
    extra = [c - a for a, c in zip(walls["local"], walls["cluster"], strict=True)]
    print(f"cluster over local: +{statistics.median(extra):.1f} s per sweep (median of the paired differences; "
          f"range {min(extra):+.1f} to {max(extra):+.1f} s)")
    print(f"cell latency, cluster over local: median {statistics.median(ratios):.3f}x, range {min(ratios):.3f}x to "
          f"{max(ratios):.3f}x over {len(ratios)} cells")
    print(f"load average (1 min) before each pair: {', '.join(f'{v:.2f}' for v in load)}")


if __name__ == "__main__":
    main()
