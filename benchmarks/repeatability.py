"""Repeatability: two sweeps of the same cells into two databases, and the share of cells whose 95%
intervals of the median overlap (the two sweeps agree within their reported precision).

Target: at least 90% of cells.

By default the two sweeps run one after the other, each over all models, with dnnbench's default
rounds (3): what a user sees running the same command twice. ``--interleave`` runs them model by
model instead (less drift between them); ``--rounds 1`` shows the intervals of single processes.

    .venv/bin/python benchmarks/repeatability.py [--models resnet18,mobilenet_v2,...] [--batch-sizes 1,8,32]
        [--rounds 3] [--interleave]
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
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interleave", action="store_true", help="the two sweeps model by model")
    args = parser.parse_args()
    extra = ("--threads", str(args.threads), "--rounds", str(args.rounds))
    models = args.models.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        dbs = [Path(tmp) / "a.db", Path(tmp) / "b.db"]
        walls = [0.0, 0.0]
        for group in ([[m] for m in models] if args.interleave else [models]):
            for i, db in enumerate(dbs):
                walls[i] += dnnbench_run(db, group, args.batch_sizes, *extra)
        a, b = ({(c["model"], c["batch_size"]): c for c in cells(db) if c["status"] == "ok"} for db in dbs)
    agree = inside = 0
    for key in sorted(a.keys() & b.keys()):
        x, y = a[key], b[key]
        overlap = x["latency_ci_low_s"] <= y["latency_ci_high_s"] and y["latency_ci_low_s"] <= x["latency_ci_high_s"]
        agree += overlap
        # stricter: each sweep's median inside the other's interval
        inside += (x["latency_ci_low_s"] <= y["latency_median_s"] <= x["latency_ci_high_s"]
                   and y["latency_ci_low_s"] <= x["latency_median_s"] <= y["latency_ci_high_s"])
        ratio = y["latency_median_s"] / x["latency_median_s"]
        print(f"{key[0]:20s} batch {key[1]:3d}: {x['latency_median_s'] * 1e3:9.2f} ms ±{x['ci_rel']:.1%} | "
              f"{y['latency_median_s'] * 1e3:9.2f} ms ±{y['ci_rel']:.1%}  ratio {ratio:.3f}"
              f"  {'agree' if overlap else 'DISAGREE'}")
    n = len(a.keys() & b.keys())
    widths = sorted(c["ci_rel"] for c in [*a.values(), *b.values()])
    print(f"\n{agree}/{n} cells agree within their intervals ({agree / n:.0%}); rounds {args.rounds}, "
          f"{'interleaved' if args.interleave else 'one sweep after the other'}; sweep wall time "
          f"{walls[0]:.0f} s and {walls[1]:.0f} s; interval half-width median ±{widths[len(widths) // 2]:.1%}, "
          f"largest ±{widths[-1]:.1%}")
    print(f"{inside}/{n} cells ({inside / n:.0%}) have each sweep's median inside the other's interval")


if __name__ == "__main__":
    main()
