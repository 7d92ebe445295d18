"""Does calibrating BatchNorm statistics change how fast an fp32 model runs? It should not: the
statistics' values change, not the arithmetic. The worker calibrates them (`zoo.weights.calibrate_norms_`)
so that every precision sees activations near unit scale; without it a deep net's activations reach
1e8..1e12, finite in fp32, and an fp32 figure must not move because of the change.

Two copies of each model with the same weights, one calibrated, timed in one process in turn, window
by window (A B A B ...), so that drift hits both alike; the figure is the ratio of their median
window times with a 95% interval over the pairs (a t-interval on the log ratios).

    .venv/bin/python benchmarks/calibration_speed.py [--models resnet50,mobilenet_v2,densenet121]
        [--pairs 12] [--batch-size 8]

Keep the machine otherwise quiet while it runs.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time

import torch

from dnnbench.measure.latency import t975
from dnnbench.zoo import get
from dnnbench.zoo.weights import calibrate_norms_


def window(model, x, seconds: float = 0.5) -> float:
    """The median time of one pass over a window of at least ``seconds``."""
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 3:
        t0 = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="resnet50,mobilenet_v2,densenet121")
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    torch.set_num_threads(2)
    for name in args.models.split(","):
        entry = get(name)
        raw = entry.build("cpu").eval()
        calibrated = calibrate_norms_(copy.deepcopy(raw), torch.randn(2, 3, entry.input_size, entry.input_size))
        x = torch.randn(args.batch_size, 3, entry.input_size, entry.input_size)
        with torch.inference_mode():
            scale = {k: m(x).abs().max().item() for k, m in (("raw", raw), ("calibrated", calibrated))}
            for m in (raw, calibrated):
                window(m, x, 1.0)  # warm-up
            logs = []
            for _ in range(args.pairs):
                a, b = window(calibrated, x), window(raw, x)
                logs.append(math.log(a / b))
        mean = statistics.fmean(logs)
        half = t975(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
        print(f"{name}: calibrated over raw time {math.exp(mean):.3f}x (95% interval {math.exp(mean - half):.3f}x to "
              f"{math.exp(mean + half):.3f}x, {len(logs)} pairs of 0.5 s windows at batch {args.batch_size}); "
              f"largest logit {scale['raw']:.3g} raw, {scale['calibrated']:.3g} calibrated")


if __name__ == "__main__":
    main()
