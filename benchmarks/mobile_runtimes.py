"""The mobile preset across the on-device runtimes: one table of each model in each setup at batch 1.

Reads a database a sweep filled (by default it runs one first, the command below) and prints, per
model and setup: latency with its 95% interval, the speed-up over eager fp32 with its interval,
the bytes of the files the setup ships, the preparation (export, convert, quantize), the restarts
from those files (caches cold, then warm), correctness against eager fp32, and every setup that
did not convert or run, with its reason.

    python benchmarks/mobile_runtimes.py --db mobile.db        # measures what the database lacks, then prints

The sweep it runs: `dnnbench run --zoo mobile --batch-sizes 1 --backend eager,onnxruntime,openvino,
executorch,litert,coreml --precision fp32,int8 --quick --rounds 1` (Core ML converts here and is
timed only on a Mac). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse

BACKENDS = "eager,onnxruntime,openvino,executorch,litert,coreml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="mobile.db")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-run", action="store_true", help="only print the table of what the database holds")
    args = parser.parse_args()

    import dnnbench
    from dnnbench.analysis.data import load
    from dnnbench.analysis.setups import deployments, not_converted, speedups
    from dnnbench.store import Store

    if not args.no_run:
        dnnbench.run(zoo="mobile", batch_sizes=1, backend=BACKENDS.split(","), precision=["fp32", "int8"], quick=True,
                     rounds=args.rounds, db=args.db, on_busy="wait")
    with Store(args.db, create=False) as store:
        measured = load(store)
    ups = {(u.model, u.setup.runtime()): u for u in speedups(measured) if u.batch_size == 1}
    print("| model | setup | latency (ms, 95% CI) | speed-up over eager fp32 | artifact (MiB) | prepare (s) "
          "| restart cold / warm (s) | top-1 agreement / max rel. error | note |")
    print("|---|---|---|---|---|---|---|---|---|")
    for d in deployments(measured):
        cell, runtime = d.cell, d.setup.runtime()
        if cell:
            low, high = cell.get("latency_ci_low_s"), cell.get("latency_ci_high_s")
            latency = f"{cell['latency_median_s'] * 1e3:.3g} ({low * 1e3:.3g} to {high * 1e3:.3g})" if low and high \
                else f"{cell['latency_median_s'] * 1e3:.3g}"
            if cell.get("disturbed"):
                latency += " busy"
        else:
            latency = "not timed"
        up = ups.get((d.model, runtime))
        speedup = f"{up.ratio.value:.2f}x ({up.ratio.low:.2f} to {up.ratio.high:.2f})" if up else "-"
        restart = (f"{d.restart_cold_s:.3g} / {d.restart_warm_s:.3g}" if d.restart_cold_s is not None
                   and d.restart_warm_s is not None else "-")
        agree = "-"
        if cell and cell.get("max_rel_error") is not None:
            top1 = cell.get("top1_agreement")
            agree = f"{'-' if top1 is None else f'{top1:.0%}'} / {cell['max_rel_error']:.2g}"
        note = d.wrong or d.restart_reason or ("untimed here" if d.untimed else "")
        print(f"| {d.model} | {runtime} | {latency} | {speedup} | "
              f"{d.artifact_bytes / 2**20:.3g} | {d.prepare_s or 0:.3g} | {restart} | {agree} | {note} |"
              if d.artifact_bytes else
              f"| {d.model} | {runtime} | {latency} | {speedup} | - | {d.prepare_s or 0:.3g} | {restart} | {agree} | "
              f"{note} |")
    failed = not_converted(measured)
    print(f"\nDid not convert or run ({len(failed)}):")
    for f in failed:
        print(f"- {f.model} in {f.setup.runtime()}: {f.status}: {f.why}")


if __name__ == "__main__":
    main()
