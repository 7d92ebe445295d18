"""How fast dnnbench builds models and counts their figures, against the libraries' own way.

Builds each model both ways, interleaved, several rounds (the machine is noisy: compare the ratio
within a round, not seconds between runs), and reports medians; then times `static_figures` (meta
device) for the largest models and for every model of every preset, with peak memory.

    .venv/bin/python benchmarks/static_speed.py
"""

from __future__ import annotations

import resource
import statistics
import time
import warnings

import torch

from dnnbench.measure.static import static_figures
from dnnbench.zoo import PRESETS, get

warnings.filterwarnings("ignore")
ROUNDS = 3


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    torch.set_num_threads(2)
    print("build with random weights: dnnbench (skip init + pooled fill) vs the library's own init")
    for name in ["vgg16", "resnet152", "vit_l_16", "timm/nasnetalarge"]:
        entry = get(name)
        ours, theirs = [], []
        for _ in range(ROUNDS):  # interleaved
            ours.append(timed(lambda e=entry: e.build("cpu")))
            theirs.append(timed(lambda e=entry: e.builder().eval()))
        o, t = statistics.median(ours), statistics.median(theirs)
        print(f"  {name:20s} dnnbench {o:6.3f} s  library init {t:6.3f} s  ratio {t / o:5.1f}x"
              f"  (spread {min(ours):.3f}-{max(ours):.3f} s / {min(theirs):.3f}-{max(theirs):.3f} s, n={ROUNDS})")

    print("static figures on the meta device (params, MACs, file size, accuracy)")
    for name in ["vit_h_14", "regnet_y_128gf", "timm/vit_giant_patch14_224"]:
        seconds = timed(lambda n=name: static_figures(get(n)))
        print(f"  {name:28s} {seconds:6.3f} s")
    names = list(dict.fromkeys(n for v in PRESETS.values() for n in v))
    start = time.perf_counter()
    for name in names:
        static_figures(get(name))
    total = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  all {len(names)} preset models: {total:.1f} s ({total / len(names) * 1000:.0f} ms/model); "
          f"process peak RSS {peak:.0f} MiB (includes the CPU builds above)")


if __name__ == "__main__":
    main()
