"""A truth that a host's drift between minutes moves less: every model timed in turn, in one process.

`benchmarks/predict_accuracy.py` checks predictions against cells a sweep measured in rounds minutes
apart. On a shared host whose speed moves between minutes (rounds ±18% apart, one standard
deviation, on a 2-core VM), a model's truth then moves with the minutes its rounds fell in, and no
prediction is closer than that. Here the models of a database's cells at one batch size are built
once, in one process (registry models only, freed memory kept as a worker keeps it), and timed in
turn: each cycle times every model's passes (their median), in a new random order, for ``--cycles``
cycles, so that each model meets every minute's speed alike. The median over cycles replaces each
cell's latency in a copy of the database (``--out``; the source is only read), with the cycles'
medians as its rounds, ready for `predict_accuracy.py --db OUT`.

    .venv/bin/python benchmarks/interleaved_truth.py --db measured.db --batch 1 --out interleaved.db [--cycles 10]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from dnnbench.measure.memory import speed_mode  # noqa: E402
from dnnbench.zoo import get  # noqa: E402


def cells(db: Path, batch: int) -> list[tuple[str, int, int]]:
    """(model, input size, threads) of the database's ok cells at ``batch``."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return con.execute("SELECT DISTINCT model, input_size, threads FROM cells WHERE batch_size = ? AND "
                           "status = 'ok' ORDER BY model", (batch,)).fetchall()


def interleaved(models: dict, cycles: int, passes: int, seed: int = 0) -> dict[str, list[float]]:
    """{name: each cycle's median seconds}: every model's ``passes`` timed in turn, a random order a cycle."""
    rng = random.Random(seed)
    names = list(models)
    found: dict[str, list[float]] = {n: [] for n in names}
    with torch.inference_mode():
        for model, x in models.values():  # warm: the first passes allocate what the next reuse
            for _ in range(3):
                model(x)
        for cycle in range(cycles):
            rng.shuffle(names)
            for name in names:
                model, x = models[name]
                model(x)  # its weights back in the caches the models before it used
                times = []
                for _ in range(passes):
                    start = time.perf_counter()
                    model(x)
                    times.append(time.perf_counter() - start)
                found[name].append(statistics.median(times))
            print(f"cycle {cycle + 1}/{cycles} done", file=sys.stderr)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    if args.out.exists():
        sys.exit(f"{args.out} exists: pass a new path")
    found = cells(args.db, args.batch)
    threads = {t for _, _, t in found}
    if len(threads) != 1:
        sys.exit(f"cells of several thread counts at batch {args.batch}: {sorted(threads)}")
    speed_mode()
    torch.set_num_threads(threads.pop())
    models = {}
    for name, size, _ in found:
        entry = get(name, input_size=size)
        models[name] = (entry.build(), torch.randn(args.batch, 3, size, size))
    start = time.perf_counter()
    medians = interleaved(models, args.cycles, args.passes)
    shutil.copyfile(args.db, args.out)
    with sqlite3.connect(args.out) as con:
        for name, values in medians.items():
            con.execute("UPDATE cells SET latency_median_s = ?, round_medians = ?, time_per_image_s = ?, "
                        "images_per_s = ? WHERE model = ? AND batch_size = ? AND status = 'ok'",
                        (statistics.median(values), json.dumps(values), statistics.median(values) / args.batch,
                         args.batch / statistics.median(values), name, args.batch))
    spread = [max(v) / min(v) for v in medians.values()]
    print(f"{len(medians)} models at batch {args.batch}, {args.cycles} cycles of {args.passes} passes in "
          f"{time.perf_counter() - start:.0f} s; each model's cycles' medians spread (largest / smallest): median "
          f"{statistics.median(spread):.2f}x, {min(spread):.2f}x to {max(spread):.2f}x; written to {args.out}")


if __name__ == "__main__":
    main()
