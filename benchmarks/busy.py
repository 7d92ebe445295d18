"""A busy machine: the same small sweep quiet, and under a synthetic load this script starts (processes
that each keep one core busy: steadily, or in bursts), with the busy handling off (`--on-busy
measure`: the load is only recorded) and on (`--on-busy wait`). Each condition's figures against the
quiet run's, the flags raised, and the ranking of the models at each batch size.

The quiet run is taken first and again last: how far the two quiet runs differ is the machine's own
drift (the host's other tenants, which no counter inside the machine sees unless as steal), the floor
under every comparison. A cell *moved* when its own 95% interval lies wholly outside the range of the
two quiet medians: the load, not the drift, moved it, and its interval would have misled a reader.
The target: with the handling on, no cell moves unflagged, and every pair of models whose order
flips against both quiet runs has a flagged cell. Keep the machine otherwise quiet while this runs.

    .venv/bin/python benchmarks/busy.py [--models resnet18,mobilenet_v2,squeezenet1_1,alexnet]
        [--batch-sizes 1,8] [--budget 3] [--conditions quiet,steady1,steady2,bursty1]
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from common import PY

from dnnbench.store import Store

MODELS = "resnet18,mobilenet_v2,squeezenet1_1,alexnet"


def start_load(kind: str) -> list[subprocess.Popen]:
    """steadyN: N processes spinning all the time; burstyN: N processes spinning 4 s, resting 4 s."""
    n = int(kind[-1])
    if kind.startswith("steady"):
        script = "while :; do :; done"
    else:
        script = "while :; do end=$(($(date +%s) + 4)); while [ $(date +%s) -lt $end ]; do :; done; sleep 4; done"
    return [subprocess.Popen(["sh", "-c", script], start_new_session=True) for _ in range(n)]


def stop_load(procs) -> None:
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def sweep(db: Path, models: str, batch_sizes: str, budget: float, on_busy: str) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    out = subprocess.run([PY, "-m", "dnnbench", "run", *models.split(","), "--batch-sizes", batch_sizes,
                          "--db", str(db), "--quick", "--max-seconds-per-cell", str(budget), "--on-busy", on_busy],
                         capture_output=True, text=True)
    if out.returncode not in (0, 1):
        raise SystemExit(f"dnnbench run failed: {out.stderr[-2000:]}")
    with Store(db, create=False) as store:
        return time.perf_counter() - start, store.cells()


def compare(name: str, cells: list[dict], quiet: dict, seconds: float, quiet2: dict | None = None) -> dict:
    """The condition's cells against the quiet ones (``quiet2``: the range of two quiet runs): ratios to
    the first, moved cells, flags, ranking flips."""
    by = {(c["model"], c["batch_size"]): c for c in cells if c["status"] == "ok"}
    moved = moved_unflagged = flagged = 0
    ratios = []
    for key, q in quiet.items():
        c = by.get(key)
        if c is None:
            continue
        ratios.append(c["latency_median_s"] / q["latency_median_s"])
        quiet_range = sorted([q["latency_median_s"]] + ([quiet2[key]["latency_median_s"]] if quiet2 and key in quiet2
                                                          else []))
        is_moved = c["latency_ci_high_s"] < quiet_range[0] or c["latency_ci_low_s"] > quiet_range[-1]
        moved += is_moved
        flagged += bool(c.get("disturbed"))
        moved_unflagged += is_moved and not c.get("disturbed")
    flips = flips_unflagged = 0
    for b in sorted({k[1] for k in quiet}):
        keys = [k for k in quiet if k[1] == b and k in by]
        for x, y in itertools.combinations(keys, 2):
            before = {quiet[x]["latency_median_s"] < quiet[y]["latency_median_s"]}
            if quiet2 and x in quiet2 and y in quiet2:
                before.add(quiet2[x]["latency_median_s"] < quiet2[y]["latency_median_s"])
            after = by[x]["latency_median_s"] < by[y]["latency_median_s"]
            if after not in before:
                flips += 1
                flips_unflagged += not (by[x].get("disturbed") or by[y].get("disturbed"))
    ratios.sort()
    return {"condition": name, "cells": len(by), "median_ratio": ratios[len(ratios) // 2] if ratios else None,
            "max_ratio": ratios[-1] if ratios else None, "moved": moved, "moved_unflagged": moved_unflagged,
            "flagged": flagged, "flips": flips, "flips_unflagged": flips_unflagged,
            "waited_s": sum(c.get("busy_wait_s") or 0 for c in by.values()),
            "attempts": sum(c.get("busy_attempts") or 1 for c in by.values()), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--budget", type=float, default=3.0)
    parser.add_argument("--conditions", default="steady1,steady2,bursty1")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dnnbench-busy-"))
    rows = []
    seconds, first = sweep(tmp / "quiet.db", args.models, args.batch_sizes, args.budget, "measure")
    quiet = {(c["model"], c["batch_size"]): c for c in first if c["status"] == "ok"}
    print(f"quiet reference: {len(quiet)} cells in {seconds:.0f} s, "
          f"{sum(bool(c.get('disturbed')) for c in first)} flagged", flush=True)
    runs = []
    for load in args.conditions.split(","):
        for on_busy in ("measure", "wait"):
            procs = start_load(load)
            try:
                time.sleep(1)
                seconds, got = sweep(tmp / f"{load}-{on_busy}.db", args.models, args.batch_sizes, args.budget, on_busy)
            finally:
                stop_load(procs)
            runs.append((f"{load}, --on-busy {on_busy}", got, seconds))
            print(_line(compare(runs[-1][0], got, quiet, seconds)), flush=True)
    seconds, last = sweep(tmp / "quiet2.db", args.models, args.batch_sizes, args.budget, "measure")
    quiet2 = {(c["model"], c["batch_size"]): c for c in last if c["status"] == "ok"}
    rows.append(compare("quiet again (against the first)", last, quiet, seconds))
    print(_line(rows[-1]), flush=True)
    print("against the range of the two quiet runs:")
    for name, got, seconds in runs:
        rows.append(compare(name, got, quiet, seconds, quiet2))
        print(_line(rows[-1]), flush=True)
    print(f"databases in {tmp}")
    print()
    print("| condition | cells | median ratio to quiet | max ratio | moved beyond its interval | of them unflagged "
          "| flagged | ranking flips | of them unflagged | waited (s) | timing attempts | sweep (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['condition']} | {r['cells']} | {r['median_ratio']:.2f}x | {r['max_ratio']:.2f}x | {r['moved']} | "
              f"{r['moved_unflagged']} | {r['flagged']} | {r['flips']} | {r['flips_unflagged']} | "
              f"{r['waited_s']:.0f} | {r['attempts']} | {r['seconds']:.0f} |")


def _line(r: dict) -> str:
    return (f"{r['condition']}: {r['cells']} cells, median {r['median_ratio']:.2f}x quiet (max {r['max_ratio']:.2f}x), "
            f"{r['moved']} moved beyond their interval ({r['moved_unflagged']} unflagged), {r['flagged']} flagged, "
            f"{r['flips']} ranking flips ({r['flips_unflagged']} unflagged), waited {r['waited_s']:.0f} s, "
            f"{r['seconds']:.0f} s")


if __name__ == "__main__":
    main()
