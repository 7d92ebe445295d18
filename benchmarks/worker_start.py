"""How long a worker takes to start, forked from the fork server against a fresh process.

A worker's start is the time from the sweep starting it to its first batch size beginning: its
imports (what the fork server saves), then building the model, loading its weights and the first
pass (the same either way, and short for a small model at 64 px). Both ways are timed in turn, worker by
worker (fork, fresh, fork, ...), on one sweep each over the same models, so that drift hits both
alike; the figures are the median and range over the workers, and the ratio of the medians.

    .venv/bin/python benchmarks/worker_start.py [--workers 6] [--model squeezenet1_1]

Keep the machine otherwise quiet while it runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from dnnbench.runner import RunConfig, Sweep
from dnnbench.runner.plan import ModelJob
from dnnbench.runner.sweep import SweepResult
from dnnbench.setup import Setup
from dnnbench.store import Store
from dnnbench.zoo import get


def start_times(sweep: Sweep, store: Store, job: ModelJob) -> float:
    """Seconds from starting one worker to its first batch size beginning."""
    marks: dict[str, float] = {}
    sweep.on_event = lambda kind, data: marks.setdefault(kind, time.perf_counter())
    original = Sweep._watch_worker

    def watched(self, job, result, scratch):
        marks["launch"] = time.perf_counter()
        return original(self, job, result, scratch)

    Sweep._watch_worker = watched
    try:
        sweep._run_job(job, SweepResult(store.start_run([], {}, {})))
    finally:
        Sweep._watch_worker = original
    return marks["start"] - marks["launch"]  # "start": the first batch size begins


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--model", default="squeezenet1_1")
    args = parser.parse_args()
    entry = get(args.model, 64)
    cfg = RunConfig(batch_sizes=(1,), setups=(Setup(threads=2),), quick=True, max_seconds_per_cell=0.2,
                    on_busy="measure")
    times: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "w.db") as store:
        sweeps = {fork: Sweep(store, cfg, environment={"peak_flops": 1.0}, fork_server=fork) for fork in (True, False)}
        sweeps[True]._fork_server().wait_ready()  # the server's one import is not a worker's start
        for sweep in sweeps.values():
            sweep._idle_w = None
        job = ModelJob(entry.name, entry.input_size, cfg.setups[0].on("bench"), (1,), cfg)
        for _ in range(args.workers):
            for fork in (True, False):
                with store.db:
                    store.db.execute("DELETE FROM cells")
                times[fork].append(start_times(sweeps[fork], store, job))
        sweeps[True].close()
    for fork, name in ((True, "forked"), (False, "fresh")):
        t = times[fork]
        print(f"{name:7s} worker start to its first batch: median {statistics.median(t):.3f} s "
              f"(min {min(t):.3f}, max {max(t):.3f}, {len(t)} workers)")
    print(f"fresh over forked: {statistics.median(times[False]) / statistics.median(times[True]):.1f}x")


if __name__ == "__main__":
    main()
