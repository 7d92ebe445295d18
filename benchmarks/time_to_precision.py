"""Time to a precise answer: a whole `dnnbench run` sweep (default: the canziani2016 preset at batch
sizes 1, 8 and 64), against timm's benchmark.py protocol at its defaults on the same cells.

Reports dnnbench's wall time, the share of it spent inside timed forward passes, and the precision
reached (the 95% interval of each cell's median). timm's protocol runs 10 warm-up and 40 timed
steps per cell in one process per model (its bulk_runner); it is run for real on the cells whose
pass is short enough (--timm-max-pass), and for the others its time is 50 passes at dnnbench's
measured median plus the same build time, and said so. Its precision is what 40 samples give: the
interval of the median of the first 40 samples dnnbench took in the same cell.

    .venv/bin/python benchmarks/time_to_precision.py [--zoo canziani2016] [--batch-sizes 1,8,64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from common import cells, dnnbench_run, plain

from dnnbench.measure.latency import median_ci


def rel(values) -> float | None:
    ordered = sorted(values)
    ci = median_ci(ordered)
    if ci is None:
        return None
    mid = statistics.median(ordered)
    return max(mid - ci[0], ci[1] - mid) / mid


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--zoo", default="canziani2016")
    parser.add_argument("--batch-sizes", default="1,8,64")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timm-max-pass", type=float, default=1.0,
                        help="run timm's protocol for real where a pass takes less than this many seconds")
    parser.add_argument("--db", help="keep the database here (default: a temporary file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "sweep.db"
        wall = dnnbench_run(db, ["--zoo", args.zoo], args.batch_sizes, "--threads", str(args.threads))
        rows = [c for c in cells(db) if c["status"] == "ok"]
    timed = sum(c["timed_s"] for c in rows)
    warm = sum(c["warmup_s"] for c in rows)
    reached = [c["ci_rel"] for c in rows]
    print(f"dnnbench: {len(rows)} cells in {wall:.0f} s wall; timed passes {timed:.0f} s ({timed / wall:.0%}), "
          f"warm-up {warm:.0f} s ({warm / wall:.0%})")
    print(f"  precision reached (95% interval of the median, ± of it): median ±{statistics.median(reached):.1%}, "
          f"worst ±{max(reached):.1%}; {sum(r <= 0.02 for r in reached)}/{len(rows)} cells within ±2%; "
          f"stopped by: {json.dumps({s: sum(c['stop_reason'] == s for c in rows) for s in ('converged', 'time_cap')})}")

    timm_total, timm_real, timm_rel = 0.0, 0, []
    for c in rows:
        samples = json.loads(c["latency_samples"])
        if c["latency_median_s"] < args.timm_max_pass:
            start = time.perf_counter()
            out = plain(c["model"], c["batch_size"], args.threads, "--timm")
            timm_total += time.perf_counter() - start
            timm_rel.append(rel(out["samples"]))
            timm_real += 1
        else:
            timm_total += c["cold_build_s"] + c["cold_first_s"] + 50 * c["latency_median_s"] + 3.0  # + imports
            timm_rel.append(rel(samples[:40]) if len(samples) >= 6 else None)
    known = [r for r in timm_rel if r is not None]
    print(f"timm protocol (10 + 40 passes per cell): {timm_total:.0f} s ({timm_real} cells run for real, "
          f"{len(rows) - timm_real} computed from the measured median); precision of its 40 samples: median "
          f"±{statistics.median(known):.1%}, worst ±{max(known):.1%}, {sum(r <= 0.02 for r in known)}/{len(known)} "
          f"within ±2%")
    print(f"dnnbench / timm wall time: {wall / timm_total:.2f}")


if __name__ == "__main__":
    main()
