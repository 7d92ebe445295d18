"""A truth that a host's drift between minutes moves less: every model timed in turn, in one process.

`benchmarks/predict_accuracy.py` checks predictions against cells a sweep measured in rounds minutes
apart. On a shared host whose speed moves between minutes (rounds ±18% apart, one standard
deviation, on a 2-core VM), a model's truth then moves with the minutes its rounds fell in, and no
prediction is closer than that. Here the models of a database's eager fp32 CPU cells of this machine
at one batch size are built once, in one process (registry models only; freed memory kept, denormals
flushed and threads set as a worker does, under the measuring lock), and timed in turn: each cycle times every model's passes (their median), in a new random order, for ``--cycles``
cycles, so that each model meets every minute's speed alike. The median over cycles replaces each
cell's latency in a copy of the database (``--out``; the source is only read), with the cycles'
medians as its rounds, ready for `predict_accuracy.py --db OUT`.

    .venv/bin/python benchmarks/interleaved_truth.py --db measured.db --batch 1 --out interleaved.db [--cycles 10]
        [--machine NAME]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from dnnbench.runner.lock import machine_lock  # noqa: E402
from dnnbench.worker import prepare_torch  # noqa: E402
from dnnbench.zoo import get  # noqa: E402
from dnnbench.zoo.registry import is_user_model  # noqa: E402

# the cells replaced: this machine's eager fp32 passes on the CPU, as `dnnbench run` stores them
WHERE = ("batch_size = ? AND status = 'ok' AND machine = ? AND device = 'cpu' AND backend = 'eager' "
         "AND precision = 'fp32' AND layout = 'nchw'")


def cells(db: Path, batch: int, machine: str) -> list[tuple[str, int, int]]:
    """(model, input size, threads) of the database's eager fp32 cells of ``machine`` at ``batch``."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        found = con.execute(f"SELECT DISTINCT model, input_size, threads FROM cells WHERE {WHERE} ORDER BY model",
                            (batch, machine)).fetchall()
    return [c for c in found if not is_user_model(c[0])]


def _only_machine(db: Path, batch: int) -> str:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        found = [m for (m,) in con.execute(f"SELECT DISTINCT machine FROM cells WHERE {WHERE.replace('machine = ?', '1')}",
                                          (batch,))]
    if len(found) != 1:
        sys.exit(f"eager fp32 cells of {len(found)} machines at batch {batch} ({', '.join(found)}): name this one "
                 "with --machine")
    return found[0]


def interleaved(models: dict, cycles: int, passes: int, seed: int = 0) -> dict:
    """{(name, size): each cycle's median seconds}: every model's ``passes`` timed in turn, a random
    order a cycle."""
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
    parser.add_argument("--machine", help="whose cells (this machine's name in the database; default: its only one)")
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    if args.out.exists():
        sys.exit(f"{args.out} exists: pass a new path")
    machine = args.machine or _only_machine(args.db, args.batch)
    found = cells(args.db, args.batch, machine)
    threads = {t for _, _, t in found}
    if len(threads) != 1:
        sys.exit(f"not one thread count among {machine}'s eager fp32 cells at batch {args.batch}: {sorted(threads)}")
    prepare_torch(threads.pop())
    models = {}
    for name, size, _ in found:
        entry = get(name, input_size=size)
        models[(name, size)] = (entry.build(), torch.randn(args.batch, 3, size, size))
    start = time.perf_counter()
    with machine_lock():
        medians = interleaved(models, args.cycles, args.passes)
    with sqlite3.connect(f"file:{args.db}?mode=ro", uri=True) as source, sqlite3.connect(args.out) as out:
        source.backup(out)  # with what its write-ahead log holds
        for (name, size), values in medians.items():
            median = statistics.median(values)
            out.execute(f"UPDATE cells SET latency_median_s = ?, round_medians = ?, rounds = ?, time_per_image_s = ?, "
                        f"images_per_s = ? WHERE {WHERE} AND model = ? AND input_size = ?",
                        (median, json.dumps(values), len(values), median / args.batch, args.batch / median,
                         args.batch, machine, name, size))
    spread = [max(v) / min(v) for v in medians.values()]
    print(f"{len(medians)} models at batch {args.batch}, {args.cycles} cycles of {args.passes} passes in "
          f"{time.perf_counter() - start:.0f} s; each model's cycles' medians spread (largest / smallest): median "
          f"{statistics.median(spread):.2f}x, {min(spread):.2f}x to {max(spread):.2f}x; written to {args.out}")


if __name__ == "__main__":
    main()
