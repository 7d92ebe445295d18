"""Overhead: what the timing harness adds to a forward pass of a tiny model, against a plain loop
that times each pass with perf_counter. Both run in this process, interleaved, many rounds.

Rounds alternate which loop goes first. Measured two ways: the wall time per pass of the whole loop (the harness's bookkeeping between
passes included) and the median of the per-pass samples each loop records.

Target: under 1%.

    .venv/bin/python benchmarks/overhead.py [--passes 2000] [--rounds 15]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch
from torch import nn

from dnnbench.measure.latency import TimingPolicy, time_until_precise


def tiny() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 10)).eval()


def plain_loop(model, x, n: int) -> tuple[float, float]:
    samples = []
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        model(x)
        samples.append(time.perf_counter() - t0)
    return (time.perf_counter() - start) / n, statistics.median(samples)


def harness(model, x, n: int) -> tuple[float, float]:
    # a target no loop reaches: the harness runs exactly n passes, checking its rule as it goes
    policy = TimingPolicy(target_ci=1e-9, max_seconds=1e9, min_seconds=0.0, max_samples=n)
    start = time.perf_counter()
    result = time_until_precise(functools.partial(model, x), policy)  # as the worker calls it
    return (time.perf_counter() - start) / n, result.median


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--passes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    model, x = tiny(), torch.randn(1, 3, 16, 16)
    wall, med = [], []
    with torch.inference_mode():
        plain_loop(model, x, args.passes)  # warm-up
        for r in range(args.rounds):  # ABBA: neither loop always runs first
            if r % 2:
                h_wall, h_med = harness(model, x, args.passes)
                p_wall, p_med = plain_loop(model, x, args.passes)
            else:
                p_wall, p_med = plain_loop(model, x, args.passes)
                h_wall, h_med = harness(model, x, args.passes)
            wall.append(h_wall / p_wall - 1)
            med.append(h_med / p_med - 1)
    print(f"tiny model: {p_med * 1e6:.1f} us per pass; {args.rounds} interleaved rounds of {args.passes} passes")
    print(f"overhead, wall time per pass: median {statistics.median(wall) * 100:+.2f}% "
          f"(rounds: {min(wall) * 100:+.2f}% .. {max(wall) * 100:+.2f}%)")
    print(f"overhead, median sample:      median {statistics.median(med) * 100:+.2f}% "
          f"(rounds: {min(med) * 100:+.2f}% .. {max(med) * 100:+.2f}%)")


if __name__ == "__main__":
    main()
