"""The regression gate's error rates on this machine: false alarms on A/A pairs and power on a known
slowdown, paired (both sides in one sweep) and unpaired (two sweeps, minutes apart).

Each repetition is one sweep of three models at batch 1, in rounds (every model once per round, in a
random order): resnet18, the same network again (benchmarks/models/slowed.py:resnet18_again) and the
network with a matrix product after it sized to cost ``--slowdown`` of its pass
(slowed.py:resnet18_slowed; the size is chosen here first, on the quiet machine). Then
`dnnbench.compare` at ``--margin``:

- paired A/A: resnet18 against resnet18_again in the same sweep; a false alarm is a gate failure;
- paired A/B: resnet18 against resnet18_slowed in the same sweep; detected when the gate fails;
- unpaired A/A: resnet18 of one sweep against resnet18 of the next; unpaired A/B: resnet18 of one sweep
  against resnet18_slowed of the next (versions measured apart, as `compare OLD.db NEW.db`).

    .venv/bin/python benchmarks/compare_gate.py [--repeats 20] [--rounds 5] [--margin 0.05] [--slowdown 0.05]

Run it on a quiet machine. Prints the rates and writes compare_gate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from common import HERE, dnnbench_run

import dnnbench

FILE = HERE / "models" / "slowed.py"
BASE, AGAIN, SLOWED = "resnet18", f"{FILE}:resnet18_again", f"{FILE}:resnet18_slowed"


def extra_size(share: float, threads: int) -> tuple[int, float]:
    """The side of the square matrix product that costs ``share`` of resnet18's pass at batch 1."""
    import torch
    import torchvision

    torch.set_num_threads(threads)
    model, x = torchvision.models.resnet18().eval(), torch.randn(1, 3, 224, 224)

    def timed(fn, k=25) -> float:
        with torch.inference_mode():
            for _ in range(3):
                fn()
            times = []
            for _ in range(k):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        return statistics.median(times)

    target = share * timed(lambda: model(x))
    lo, hi = 16, 2048
    while hi - lo > 8:  # the product's time grows with its side: bisect
        mid = (lo + hi) // 2
        a = torch.randn(mid, mid)
        if timed(lambda: torch.mm(a, a), 15) < target:
            lo = mid
        else:
            hi = mid
    return lo, target


def gate(result) -> bool:
    """Whether `compare --fail-above` would exit with status 5."""
    return bool(result.regressions("cell"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--margin", type=float, default=0.05)
    parser.add_argument("--slowdown", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=10.0, help="--max-seconds-per-cell of each sweep")
    args = parser.parse_args()
    n, target = extra_size(args.slowdown, args.threads)
    os.environ["DNNBENCH_EXTRA_N"] = str(n)
    print(f"extra work: a {n}x{n} matrix product, {target * 1e3:.2f} ms ({100 * args.slowdown:g}% of a pass); "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    out = Path(tempfile.mkdtemp(prefix="compare-gate-"))
    dbs, walls = [], []
    for i in range(args.repeats):
        db = out / f"sweep{i}.db"
        walls.append(dnnbench_run(db, [BASE, AGAIN, SLOWED], "1", "--rounds", str(args.rounds), "--threads",
                                  str(args.threads), "--max-seconds-per-cell", str(args.budget), "--on-busy", "measure"))
        dbs.append(db)
        print(f"sweep {i + 1}: {walls[-1]:.0f} s, load average {os.getloadavg()[0]:.2f}", flush=True)
    found = {"paired A/A": [], "paired A/B": [], "unpaired A/A": [], "unpaired A/B": []}
    ratios = {k: [] for k in found}
    for i, db in enumerate(dbs):
        for name, other in (("paired A/A", AGAIN), ("paired A/B", SLOWED)):
            r = dnnbench.compare(db, base_where={"model": BASE}, new_where={"model": other}, margin=args.margin)
            found[name].append(gate(r))
            ratios[name].append(r[0]["ratio"])
        if i + 1 < len(dbs):
            for name, other in (("unpaired A/A", BASE), ("unpaired A/B", SLOWED)):
                r = dnnbench.compare(db, dbs[i + 1], base_where={"model": BASE}, new_where={"model": other},
                                     margin=args.margin)
                found[name].append(gate(r))
                ratios[name].append(r[0]["ratio"])
    summary = {}
    for name, alarms in found.items():
        rate = sum(alarms) / len(alarms)
        summary[name] = {"pairs": len(alarms), "gate_failed": sum(alarms), "rate": rate,
                         "median_ratio": statistics.median(ratios[name])}
        what = "false alarms" if "A/A" in name else "detected"
        print(f"{name}: {what} {sum(alarms)} of {len(alarms)} ({100 * rate:.0f}%), median ratio "
              f"{statistics.median(ratios[name]):.3f}")
    per_model = statistics.median(walls) / 3
    print(f"wall time: {statistics.median(walls):.0f} s a sweep of 3 models ({per_model:.0f} s a model, "
          f"{args.rounds} rounds)")
    with open("compare_gate.json", "w") as f:
        json.dump({"extra_n": n, "summary": summary, "walls": walls, "args": vars(args)}, f, indent=1)


if __name__ == "__main__":
    main()
