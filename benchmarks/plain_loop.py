"""A hand-written timing loop, the baseline the other benchmarks hold dnnbench against.

Builds a model of the registry (same architecture and weights as `dnnbench run`), optionally
loads weights from a safetensors file, runs ``--warmup`` passes and then ``--passes`` timed
passes in ``torch.inference_mode()``, each timed alone with ``time.perf_counter``, and prints
one JSON line: the per-pass samples and the wall time of the timed loop. ``--timm`` mimics timm's
benchmark.py defaults instead: 10 warm-up and 40 timed steps.

It ends with ``os._exit``: the interpreter's own teardown of torch raises the process's peak
resident set by about 96 MiB (ResNet-18: 772 MiB at the last pass, 868 MiB by exit), memory that
belongs to no inference, and `/usr/bin/time` would count it.

    python benchmarks/plain_loop.py resnet18 --batch 8 --threads 2 --passes 30
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--passes", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=0.0, help="keep timing at least this long")
    parser.add_argument("--input-size", type=int)
    parser.add_argument("--weights", help="a safetensors file to load, as a user would")
    parser.add_argument("--timm", action="store_true", help="timm benchmark.py defaults: 10 warm-up, 40 timed")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    from dnnbench.zoo import get

    if args.timm:
        args.warmup, args.passes = 10, 40
    start = time.perf_counter()
    entry = get(args.model, args.input_size)
    model = entry.build("cpu")
    if args.weights:
        import safetensors.torch

        safetensors.torch.load_model(model, args.weights)
    x = torch.randn(args.batch, 3, entry.input_size, entry.input_size)
    setup_s = time.perf_counter() - start
    with torch.inference_mode():
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            model(x)
        warm_s = time.perf_counter() - t0
        samples = []
        t0 = time.perf_counter()
        while len(samples) < args.passes or time.perf_counter() - t0 < args.seconds:
            s = time.perf_counter()
            model(x)
            samples.append(time.perf_counter() - s)
        loop_s = time.perf_counter() - t0
    print(json.dumps({"model": args.model, "batch": args.batch, "samples": samples, "setup_s": setup_s,
                      "warmup_s": warm_s, "loop_s": loop_s, "total_s": time.perf_counter() - start}), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
