"""Agreement: dnnbench's median latency against a plain timed loop, same model, batch size and
thread count (the machine drifts by 2x between minutes: only ratios taken side by side mean anything).

Two parts:
- in one process (--inprocess-rounds, default 7): for each cell, rounds alternate a plain loop of
  about a second and dnnbench's timing rule (warm_up + time_until_precise, the worker's own code,
  with the worker's allocator setting) on the same model and input; the ratio of medians is taken
  round by round, so drift hits both sides alike. This is the agreement figure;
- end to end (--rounds, default 3): `dnnbench run` (its own worker process) against
  benchmarks/plain_loop.py in a fresh process, cell after cell. Separate processes minutes apart:
  what this part shows is mostly the machine's drift, reported as measured.

Target: within 5% for resnet18, mobilenet_v2 and vgg16 at batch sizes 1 and 8.

    .venv/bin/python benchmarks/agreement.py [--inprocess-rounds 7] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import cells, dnnbench_run, median, plain

MODELS = ["resnet18", "mobilenet_v2", "vgg16"]
BATCHES = [1, 8]


def in_process(rounds: int, threads: int, models: list[str]) -> None:
    import functools
    import statistics
    import time

    import torch

    from dnnbench.measure import memory
    from dnnbench.measure.latency import TimingPolicy, time_until_precise, warm_up
    from dnnbench.zoo import get

    torch.set_flush_denormal(True)
    torch.set_num_threads(threads)
    memory.speed_mode()
    policy = TimingPolicy(max_seconds=5.0)
    print(f"in one process, {rounds} interleaved rounds per cell, {threads} threads", flush=True)
    summary = []
    for name in models:
        model = get(name).build("cpu")
        for batch in BATCHES:
            x = torch.randn(batch, 3, 224, 224)
            step = functools.partial(model, x)
            ratios = []
            with torch.inference_mode():
                for _ in range(3):
                    step()
                for r in range(rounds):
                    order = ("plain", "dnnbench") if r % 2 == 0 else ("dnnbench", "plain")
                    got = {}
                    for who in order:
                        if who == "plain":
                            samples, start = [], time.perf_counter()
                            while len(samples) < 10 or time.perf_counter() - start < 1.0:
                                t0 = time.perf_counter()
                                model(x)
                                samples.append(time.perf_counter() - t0)
                            got[who] = statistics.median(samples)
                        else:
                            warm_up(step, policy)
                            got[who] = time_until_precise(step, policy).median
                    ratios.append(got["dnnbench"] / got["plain"])
            m = statistics.median(ratios)
            summary.append((name, batch, m, ratios))
            print(f"{name:13s} batch {batch}: median ratio dnnbench/plain {m:.3f} "
                  f"(rounds {min(ratios):.3f} .. {max(ratios):.3f})  {'within 5%' if abs(m - 1) <= 0.05 else 'NOT within 5%'}",
                  flush=True)
    worst = max(abs(m - 1) for _, _, m, _ in summary)
    print(f"largest difference in one process: {worst:.1%}\n", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--inprocess-rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="end to end: dnnbench run --quick (one round, 3 s)")
    parser.add_argument("--fresh", action="store_true",
                        help="end to end, beside each forked worker: the same model as a user's file, whose worker "
                             "is a fresh interpreter")
    args = parser.parse_args()
    if args.inprocess_rounds:
        in_process(args.inprocess_rounds, args.threads, args.models.split(","))
    if not args.rounds:
        return
    print(f"end to end, {args.rounds} rounds: `dnnbench run` against a plain loop in a fresh process", flush=True)
    ratios: dict[tuple, list[float]] = {}
    models = args.models.split(",")
    extra = ["--threads", str(args.threads)] + (["--quick"] if args.quick else [])
    user_file = Path(__file__).parent / "models" / "torchvision_file.py"
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for model in models:
                for batch in BATCHES:
                    ways = [("forked", model)] + ([("fresh", f"{user_file}:{model}")] if args.fresh else [])
                    got = {}
                    # the plain loop before the dnnbench runs in even rounds and after them in odd ones: drift
                    # between minutes hits both sides alike over the rounds
                    order = ["plain", *ways] if r % 2 == 0 else [*ways, "plain"]
                    for way in order:
                        if way == "plain":
                            got["plain"] = median(plain(model, batch, args.threads, "--passes", "20", "--seconds",
                                                        "3")["samples"])
                            continue
                        db = Path(tmp) / f"{way[0]}-{model}-{batch}-{r}.db"
                        dnnbench_run(db, [way[1]], str(batch), *extra)
                        got[way[0]] = cells(db)[0]["latency_median_s"]
                    for name, _ in ways:
                        ratio = got[name] / got["plain"]
                        ratios.setdefault((model, batch, name), []).append(ratio)
                        print(f"round {r + 1} {model:13s} batch {batch} {name:6s}: dnnbench {got[name] * 1e3:8.2f} ms "
                              f"plain loop {got['plain'] * 1e3:8.2f} ms  ratio {ratio:.3f}", flush=True)
    print("\nmodel          batch  worker  median ratio dnnbench/plain (per round)              within 5%")
    for (model, batch, name), values in ratios.items():
        m = median(values)
        print(f"{model:13s}  {batch:5d}  {name:6s}  {m:.3f}  ({', '.join(f'{v:.3f}' for v in values)})  "
              f"{'yes' if abs(m - 1) <= 0.05 else 'NO'}")


if __name__ == "__main__":
    main()
