"""The regression gate's error rates on this machine: false alarms on A/A pairs and power on a known
slowdown, in turns (`run --versus`), paired within one sweep, and unpaired (two sweeps, minutes apart).

The models: resnet18, the same network again (benchmarks/models/slowed.py:resnet18_again) and the
network with a matrix product after it sized to cost ``--slowdown`` of its pass
(slowed.py:resnet18_slowed; the size is chosen here first, on the quiet machine). Each repetition, at
batch 1, then `dnnbench.compare` at ``--margin``:

- ``--mode versus`` (the default): `dnnbench.versus` measures resnet18 against resnet18_again (A/A)
  and against resnet18_slowed (A/B), each in ``--rounds`` rounds of two workers taking turns;
- ``--mode sweep``: one sweep of the three models in rounds (every model once per round, in a random
  order); paired A/A and A/B within the sweep, and unpaired A/A (resnet18 of one sweep against
  resnet18 of the next) and A/B (against resnet18_slowed of the next), as `compare OLD.db NEW.db`.

A false alarm is an A/A pair the gate fails (`compare --fail-above`: a cell shown slower with a
slowdown beyond the margin not ruled out); an A/B pair is detected when the gate fails.

    .venv/bin/python benchmarks/compare_gate.py [--mode versus|sweep] [--repeats 20] [--rounds 5]
        [--margin 0.05] [--slowdown 0.05] [--budget 4]

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
    """The side of the square matrix product that, run after resnet18's pass at batch 1, makes the two
    take ``share`` longer than the pass alone (timed together, as the slowed model runs it: a product
    timed alone, with its operands hot in the cache, costs less than after a pass)."""
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

    def slowed_by(n: int) -> float:
        a = torch.randn(n, n)
        ratios = []
        for _ in range(3):  # interleaved, so that drift moves both alike
            alone = timed(lambda: model(x), 15)
            ratios.append(timed(lambda: (model(x), torch.mm(a, a)), 15) / alone - 1)
        return statistics.median(ratios)

    lo, hi = 16, 2048
    while hi - lo > 8:  # the extra share grows with the product's side: bisect
        mid = (lo + hi) // 2
        if slowed_by(mid) < share:
            lo = mid
        else:
            hi = mid
    return lo, share * timed(lambda: model(x))


def gate(result) -> bool:
    """Whether `compare --fail-above` would exit with status 5."""
    return bool(result.regressions("cell"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("versus", "sweep"), default="versus")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--margin", type=float, default=0.05)
    parser.add_argument("--slowdown", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--extra-n", type=int, default=None,
                        help="the matrix product's side, in place of the one sized here (e.g. sized from a long run "
                             "in turns: the cost grows with its cube)")
    parser.add_argument("--budget", type=float, default=4.0, help="--max-seconds-per-cell of each sweep or round")
    args = parser.parse_args()
    n, target = (args.extra_n, float("nan")) if args.extra_n else extra_size(args.slowdown, args.threads)
    os.environ["DNNBENCH_EXTRA_N"] = str(n)
    print(f"extra work: a {n}x{n} matrix product, {target * 1e3:.2f} ms ({100 * args.slowdown:g}% of a pass); "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    found, ratios, walls = (_versus if args.mode == "versus" else _sweeps)(args)
    summary = {}
    for name, alarms in found.items():
        rate = sum(alarms) / len(alarms)
        summary[name] = {"pairs": len(alarms), "gate_failed": sum(alarms), "rate": rate,
                         "median_ratio": statistics.median(ratios[name]),
                         "median_width": statistics.median(h - lo for lo, h in ratios[name + " interval"])}
        what = "false alarms" if "A/A" in name else "detected"
        print(f"{name}: {what} {sum(alarms)} of {len(alarms)} ({100 * rate:.0f}%), median ratio "
              f"{summary[name]['median_ratio']:.3f}, median interval width {summary[name]['median_width']:.3f}")
    models = 2 if args.mode == "versus" else 3
    print(f"wall time: {statistics.median(walls):.0f} s a repetition ({statistics.median(walls) / models:.0f} s a "
          f"model, {args.rounds} rounds); load average {os.getloadavg()[0]:.2f} at the end")
    with open("compare_gate.json", "w") as f:
        json.dump({"extra_n": n, "summary": summary, "walls": walls, "args": vars(args)}, f, indent=1)


def _note(found, ratios, name, result) -> None:
    found[name].append(gate(result))
    ratios[name].append(result[0]["ratio"])
    ratios[name + " interval"].append((result[0]["low"], result[0]["high"]))


def _versus(args):
    """Each repetition: resnet18 against itself and against the slowed network, the two in turns."""
    names = ("in turns A/A", "in turns A/B")
    found, ratios, walls = {k: [] for k in names}, {k: [] for m in names for k in (m, m + " interval")}, []
    for i in range(args.repeats):
        t0 = time.perf_counter()
        for name, other in zip(names, (AGAIN, SLOWED), strict=True):
            result = dnnbench.versus(BASE, {"model": other}, batch_sizes=1, threads=args.threads, rounds=args.rounds,
                                     max_seconds_per_cell=args.budget, margin=args.margin, progress=False)
            _note(found, ratios, name, result)
        walls.append(time.perf_counter() - t0)
        print(f"repetition {i + 1}: {walls[-1]:.0f} s, A/A {ratios[names[0]][-1]:.3f}, A/B {ratios[names[1]][-1]:.3f}, "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)
    return found, ratios, walls


def _sweeps(args):
    """Each repetition one sweep of the three models, compared within it and with the next."""
    names = ("paired A/A", "paired A/B", "unpaired A/A", "unpaired A/B")
    found, ratios = {k: [] for k in names}, {k: [] for m in names for k in (m, m + " interval")}
    out = Path(tempfile.mkdtemp(prefix="compare-gate-"))
    dbs, walls = [], []
    for i in range(args.repeats):
        db = out / f"sweep{i}.db"
        walls.append(dnnbench_run(db, [BASE, AGAIN, SLOWED], "1", "--rounds", str(args.rounds), "--threads",
                                  str(args.threads), "--max-seconds-per-cell", str(args.budget), "--on-busy", "measure"))
        dbs.append(db)
        print(f"sweep {i + 1}: {walls[-1]:.0f} s, load average {os.getloadavg()[0]:.2f}", flush=True)
    for i, db in enumerate(dbs):
        for name, other in (("paired A/A", AGAIN), ("paired A/B", SLOWED)):
            _note(found, ratios, name, dnnbench.compare(db, base_where={"model": BASE}, new_where={"model": other},
                                                        margin=args.margin))
        if i + 1 < len(dbs):
            for name, other in (("unpaired A/A", BASE), ("unpaired A/B", SLOWED)):
                _note(found, ratios, name, dnnbench.compare(db, dbs[i + 1], base_where={"model": BASE},
                                                            new_where={"model": other}, margin=args.margin))
    return found, ratios, walls


if __name__ == "__main__":
    main()
