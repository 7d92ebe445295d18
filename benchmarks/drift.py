"""Drift that no counter inside the machine sees: the same quick sweep repeated on a machine this script
keeps otherwise quiet, so that every difference between repetitions is the host's (other tenants on
sibling hyperthreads, shared caches and memory, clocks).

For every cell of every repetition: its median against the median of that cell over all repetitions
(the cell's *usual* time). A cell *moved* when its own 95% interval excludes its usual time by more than
``--tolerance`` (default 5%): its interval would have misled a reader, unless the cell was flagged
(disturbed, or off this machine's usual time for it: `store.usual`). The target: no moved cell unflagged,
with intervals no wider than the wandering needs.

The usual times come from a record of this script's own (``--record`` names another, e.g. the user's
``~/.cache/dnnbench/usual.sqlite``): with a fresh one the first repetition has no earlier run to be
checked against, and its cells are counted apart.

    .venv/bin/python benchmarks/drift.py [--repeats 6] [--models resnet18,mobilenet_v2,squeezenet1_1,alexnet]
        [--batch-sizes 1,8] [--budget 3] [--rounds R] [--record PATH]

Without ``--rounds``, each repetition is a quick sweep (one window per cell); with it, a default sweep of
R rounds (each cell timed in R fresh workers minutes apart, sharing the budget).
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

from common import dnnbench_run

from dnnbench.store import Store
from dnnbench.store.usual import off

MODELS = "resnet18,mobilenet_v2,squeezenet1_1,alexnet"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--budget", type=float, default=3.0)
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--record", default=None, help="the record of usual cell times (default: a fresh one)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dnnbench-drift-"))
    os.environ["DNNBENCH_USUAL"] = args.record or str(tmp / "usual.sqlite")
    every = []
    for i in range(args.repeats):
        db = tmp / f"r{i}.db"
        mode = ["--quick"] if args.rounds is None else ["--rounds", str(args.rounds)]
        seconds = dnnbench_run(db, args.models.split(","), args.batch_sizes, *mode, "--max-seconds-per-cell",
                               str(args.budget), "--on-busy", "measure")
        with Store(db, create=False) as store:
            cells = [c for c in store.cells() if c["status"] == "ok"]
        for c in cells:
            c["rep"] = i
            c["off"] = off(c) is not None
            c["flagged"] = bool(c["disturbed"]) or c["off"]
        every += cells
        checked = [c["latency_median_s"] / c["usual_s"] for c in cells if c["usual_s"]]
        shift = f", {statistics.median(checked):.2f}x their usual" if checked else ", no earlier run recorded"
        print(f"repetition {i + 1}: {len(cells)} cells in {seconds:.0f} s, {sum(bool(c['disturbed']) for c in cells)} "
              f"disturbed, {sum(c['off'] for c in cells)} off their usual{shift}, at {time.strftime('%H:%M:%S')}",
              flush=True)
    usual = {}
    for c in every:
        usual.setdefault((c["model"], c["batch_size"]), []).append(c["latency_median_s"])
    usual = {k: statistics.median(v) for k, v in usual.items()}
    for c in every:
        u = usual[(c["model"], c["batch_size"])]
        c["ratio"] = c["latency_median_s"] / u
        c["moved"] = c["latency_ci_low_s"] > u * (1 + args.tolerance) or c["latency_ci_high_s"] < u * (1 - args.tolerance)
    moved = [c for c in every if c["moved"]]
    widths = sorted(c["ci_rel"] for c in every)
    print(f"\n{len(every)} cells in {args.repeats} repetitions (databases in {tmp})")
    unflagged = [c for c in moved if not c["flagged"]]
    unchecked = [c for c in unflagged if not c["usual_s"]]
    print("| cells | cell / usual: min, max | interval ±: median, max | moved beyond interval + "
          f"{args.tolerance:.0%} | of them unflagged (of which with no earlier run recorded) | disturbed | off usual "
          "| samples: median |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {len(every)} | {min(c['ratio'] for c in every):.2f}, {max(c['ratio'] for c in every):.2f} | "
          f"{100 * widths[len(widths) // 2]:.1f}%, {100 * widths[-1]:.1f}% | {len(moved)} | "
          f"{len(unflagged)} ({len(unchecked)}) | {sum(bool(c['disturbed']) for c in every)} | "
          f"{sum(c['off'] for c in every)} | {statistics.median(c['samples'] for c in every):.0f} |")
    print("\nworst cells:")
    for c in sorted(every, key=lambda c: -abs(math.log(c["ratio"])))[:8]:
        print(f"  rep {c['rep'] + 1} {c['model']} batch {c['batch_size']}: {c['ratio']:.2f}x usual, interval "
              f"±{100 * (c['ci_rel'] or 0):.1f}%, {c['samples']} samples, contention "
              f"{100 * (c.get('contention') or 0):.1f}%, moved {c['moved']}, disturbed {bool(c['disturbed'])}, "
              f"off usual {c['off']} ({c['usual_runs'] or 0} earlier runs)")


if __name__ == "__main__":
    main()
