"""Repeatability: two sweeps of the same cells, interleaved model by model into two databases, and
the share of cells whose 95% intervals of the median overlap (the two sweeps agree within their
reported precision).

Target: at least 90% of cells.

    .venv/bin/python benchmarks/repeatability.py [--models resnet18,mobilenet_v2,...] [--batch-sizes 1,8,32]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import cells, dnnbench_run

MODELS = "resnet18,resnet50,mobilenet_v2,squeezenet1_1,googlenet,alexnet,densenet121,shufflenet_v2_x1_0"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dbs = [Path(tmp) / "a.db", Path(tmp) / "b.db"]
        for model in args.models.split(","):
            for db in dbs:
                dnnbench_run(db, [model], args.batch_sizes, "--threads", str(args.threads))
        a, b = ({(c["model"], c["batch_size"]): c for c in cells(db) if c["status"] == "ok"} for db in dbs)
    agree = 0
    for key in sorted(a.keys() & b.keys()):
        x, y = a[key], b[key]
        overlap = x["latency_ci_low_s"] <= y["latency_ci_high_s"] and y["latency_ci_low_s"] <= x["latency_ci_high_s"]
        agree += overlap
        ratio = y["latency_median_s"] / x["latency_median_s"]
        print(f"{key[0]:20s} batch {key[1]:3d}: {x['latency_median_s'] * 1e3:9.2f} ms ±{x['ci_rel']:.1%} | "
              f"{y['latency_median_s'] * 1e3:9.2f} ms ±{y['ci_rel']:.1%}  ratio {ratio:.3f}"
              f"  {'agree' if overlap else 'DISAGREE'}")
    n = len(a.keys() & b.keys())
    print(f"\n{agree}/{n} cells agree within their intervals ({agree / n:.0%})")


if __name__ == "__main__":
    main()
