"""Kernel floor: how long must a replayed kernel be timed? Each kernel of a sample is timed for 40 ms,
every call's time kept, twice (the second pass after all others, so that the machine's drift between
minutes shows): the median of its first 2, 5, 10 and 20 ms against the median of 20 ms in the second
pass, and the first 10 ms against the first 20 ms of the same pass, by the kernel's time a call.

`time_call`'s floor is 20 ms; with ``settled`` (the kernels scenario) a kernel called `SETTLED_CALLS`
times stops at 10 ms. This benchmark is the evidence for that rule: where the first 10 ms agree with
the first 20 ms far closer than a second timing agrees with the first, the floor's second half buys
nothing.

    .venv/bin/python benchmarks/kernel_floor.py --db D [--kernels 300] [--from-us 0] [--to-us 200]

D: a database whose kernels table holds kernel timings (any `dnnbench predict` leaves one); the
kernels are sampled from it (seed 1) by their stored time a call. Keep the machine quiet.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import time

SIZES = ((0, 25e-6), (25e-6, 100e-6), (100e-6, 400e-6), (400e-6, 1e-3), (1e-3, 1e9))
PREFIXES_MS = (2, 5, 10, 20)


def record(fn, seconds: float) -> list[tuple[float, float]]:
    """[(seconds since the start, seconds of the call)] of calls of ``fn`` for ``seconds``, after one warm call."""
    fn()
    out, start = [], time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        out.append((t1 - start, t1 - t0))
        if t1 - start >= seconds and len(out) >= 5:
            return out


def median_until(calls: list, limit_s: float) -> float:
    return statistics.median([d for t, d in calls if t <= limit_s] or [calls[0][1]])


def spread(values: list[float]) -> str:
    v = sorted(values)
    return f"{statistics.median(v):+.2%} ({v[len(v) // 10]:+.2%} to {v[9 * len(v) // 10]:+.2%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--kernels", type=int, default=300)
    parser.add_argument("--from-us", type=float, default=0.0)
    parser.add_argument("--to-us", type=float, default=200.0)
    args = parser.parse_args()

    import torch

    from dnnbench.measure import memory
    from dnnbench.measure.kernels import replay

    memory.speed_mode()  # as every worker times
    rows = sqlite3.connect(f"file:{args.db}?mode=ro", uri=True).execute(
        "SELECT kernel, seconds FROM kernels WHERE dtype = 'float32' AND seconds IS NOT NULL AND error IS NULL "
        "AND kernel NOT LIKE '%|%'"  # eager's: a runtime's own are prefixed
    ).fetchall()
    keys = [k for k, s in rows if args.from_us * 1e-6 <= s < args.to_us * 1e-6]
    random.Random(1).shuffle(keys)
    keys = keys[:args.kernels]
    print(f"{len(keys)} kernels of {args.from_us:g} to {args.to_us:g} us, {torch.get_num_threads()} threads")
    passes: dict[str, list] = {}
    with torch.inference_mode():
        calls = {k: replay(k, torch.float32) for k in keys}
        for _ in range(2):
            for k in keys:
                passes.setdefault(k, []).append(record(calls[k], 0.04))
    print("median (p10 to p90) of each ratio less 1")
    print("| time a call | kernels | calls in 10 ms | " + " | ".join(f"first {ms} ms / second pass"
                                                            for ms in PREFIXES_MS) + " | first 10 ms / first 20 ms |")
    print("|---" * (4 + len(PREFIXES_MS)) + "|")
    for low, high in SIZES:
        chosen = [p for p in passes.values() if low <= median_until(p[1], 0.02) < high]
        if not chosen:
            continue
        again = [median_until(p[1], 0.02) for p in chosen]
        cells = [spread([median_until(p[0], ms / 1000) / a - 1 for p, a in zip(chosen, again, strict=True)])
                 for ms in PREFIXES_MS]
        same = spread([median_until(p[0], 0.01) / median_until(p[0], 0.02) - 1 for p in chosen])
        n10 = statistics.median(sum(t <= 0.01 for t, _ in p[0]) for p in chosen)
        label = f"{low * 1e6:g} to {high * 1e6:g} us" if high < 1 else f"{low * 1e6:g} us and more"
        print(f"| {label} | {len(chosen)} | {n10:g} | " + " | ".join(cells) + f" | {same} |")


if __name__ == "__main__":
    main()
