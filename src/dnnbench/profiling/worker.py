"""The profiling process: builds models on the meta device and records their kernels, or times
kernels on this machine; user code (a model file) runs here, never in the process that asked.

Reads a JSON job on stdin:
``{"profile": [{"name", "input_size", "batch"}...]}``: one ``profile`` record per model, or ``error``;
``{"time": [key...], "threads": n, "dtype": "float32"}``: one ``kernel`` record per key (seconds, calls,
what other processes took meanwhile, or the error that stopped it).
Records are JSON lines on the descriptor named by PROFILE_FD_ENV.
"""

from __future__ import annotations

import json
import os
import sys
import time

PROFILE_FD_ENV = "DNNBENCH_PROFILE_FD"
RETRY_WAIT_S = 1.0
GROUP_S = 1.0  # kernels timed between two readings of what other processes used


def _profile(jobs: list, emit) -> None:
    import torch

    from ..measure.kernels import profile
    from ..zoo import get

    for job in jobs:
        emit("start", name=job["name"], input_size=job.get("input_size"), batch=job["batch"])
        try:
            entry = get(job["name"], job.get("input_size"))
            model = entry.build("meta")
            example = torch.empty(job["batch"], 3, entry.input_size, entry.input_size, device="meta")
            found = profile(model, example).to_dict()
            # the weights in memory: parameters and buffers, shared ones once
            tensors = {id(t): t for t in (*model.parameters(), *model.buffers())}.values()
            found["weights_bytes"] = sum(t.numel() * t.element_size() for t in tensors)
            emit("profile", name=job["name"], input_size=entry.input_size, batch=job["batch"], profile=found)
        except (Exception, SystemExit) as exc:  # one model's failure is its own record
            emit("error", name=job["name"], input_size=job.get("input_size"), batch=job["batch"],
                 error=" ".join(f"{type(exc).__name__}: {exc}".split())[:300])


def _time(keys: list, dtype_name: str, emit) -> None:
    """Time each kernel; what other processes took is read over windows of at least GROUP_S (a kernel's
    own few milliseconds are below the 10 ms ticks the counters count in), and the kernels of a
    disturbed window are timed once more after a pause, keeping the less disturbed attempt."""
    import torch

    from ..measure import busy
    from ..measure.kernels import replay, time_call

    dtype, threads = getattr(torch, dtype_name), torch.get_num_threads()

    def one(key: str) -> tuple:
        try:
            return (*time_call(replay(key, dtype)), None)
        except (Exception, SystemExit) as exc:
            return None, 0, " ".join(f"{type(exc).__name__}: {exc}".split())[:300]

    def report(results: dict, excess) -> None:
        for key, (seconds, calls, error) in results.items():
            emit("kernel", key=key, seconds=seconds, calls=calls, contention=excess, error=error)

    with torch.inference_mode():
        pending = list(keys)
        while pending:
            window, start, results = busy.Window([os.getpid()]), time.monotonic(), {}
            while pending and (not results or time.monotonic() - start < GROUP_S):
                key = pending.pop(0)
                emit("start", key=key)
                results[key] = one(key)
            load = window.end()
            excess = load.excess(threads) if load else None
            if load is not None and load.disturbed(threads):
                time.sleep(RETRY_WAIT_S)
                window = busy.Window([os.getpid()])
                again = {key: one(key) for key in results}
                second = window.end()
                if second is not None and second.excess(threads) < excess:
                    results, excess = again, second.excess(threads)
            report(results, excess)


def main() -> int:
    job = json.loads(sys.stdin.read())
    out = os.fdopen(int(os.environ[PROFILE_FD_ENV]), "w", buffering=1)

    def emit(kind: str, **fields) -> None:
        out.write(json.dumps({"kind": kind, **fields}) + "\n")

    import torch

    torch.set_flush_denormal(True)  # as the measuring worker: before the thread pool exists
    if "time" in job:
        torch.set_num_threads(int(job["threads"]))
        _time(job["time"], job.get("dtype", "float32"), emit)
    else:
        torch.set_num_threads(1)
        _profile(job["profile"], emit)
    out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
