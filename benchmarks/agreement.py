"""Agreement: dnnbench's median latency against a plain timed loop, same model, batch size and
thread count, the two interleaved cell by cell and round by round (the machine drifts; only ratios
taken side by side mean anything).

Target: within 5% for resnet18, mobilenet_v2 and vgg16 at batch sizes 1 and 8.

    .venv/bin/python benchmarks/agreement.py [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import cells, dnnbench_run, median, plain

MODELS = ["resnet18", "mobilenet_v2", "vgg16"]
BATCHES = [1, 8]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    ratios: dict[tuple, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for model in MODELS:
                for batch in BATCHES:
                    db = Path(tmp) / f"{model}-{batch}-{r}.db"
                    dnnbench_run(db, [model], str(batch), "--threads", str(args.threads))
                    ours = cells(db)[0]
                    base = plain(model, batch, args.threads, "--passes", "20", "--seconds", "3")
                    theirs = median(base["samples"])
                    ratio = ours["latency_median_s"] / theirs
                    ratios.setdefault((model, batch), []).append(ratio)
                    print(f"round {r + 1} {model:13s} batch {batch}: dnnbench {ours['latency_median_s'] * 1e3:8.2f} ms "
                          f"(±{ours['ci_rel'] * 100:.1f}%, n={ours['samples']})  plain loop {theirs * 1e3:8.2f} ms "
                          f"(n={len(base['samples'])})  ratio {ratio:.3f}", flush=True)
    print("\nmodel          batch  median ratio dnnbench/plain (per round)              within 5%")
    for (model, batch), values in ratios.items():
        m = median(values)
        print(f"{model:13s}  {batch:5d}  {m:.3f}  ({', '.join(f'{v:.3f}' for v in values)})  "
              f"{'yes' if abs(m - 1) <= 0.05 else 'NO'}")


if __name__ == "__main__":
    main()
