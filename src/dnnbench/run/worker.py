"""The worker: one process measures one model at each of its batch sizes, and streams one JSON
record per line to the sweep through a pipe (file descriptor in ``DNNBENCH_RESULT_FD``), so that
whatever the model prints cannot corrupt the results.

Started as ``python -m dnnbench.run.worker`` with the job (``ModelJob.spec()``) on stdin. The
sweep sets the thread variables and a fixed glibc mmap threshold in its environment; here
denormals are flushed before any other torch call (a denormal convolution runs up to ~190x slower
on CPU, and the flag is per thread, so it must precede the thread pool). The worker dies with
the sweep (PR_SET_PDEATHSIG), ignores Ctrl-C (the sweep decides), and keeps measuring the next
batch size after a Python error in one.

Records: ``cold`` (baseline and loaded memory, build/load/first-pass seconds), ``start`` (a batch
size begins: the sweep's watchdog attributes a crash, a kill or a timeout to it), ``cell`` (the
figures of one batch size), ``fatal`` (the model could not be built or loaded).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from .plan import RESULT_FD_ENV
_OOM_MARKERS = ("out of memory", "can't allocate memory", "not enough memory", "cannot allocate memory")


def _die_with_parent() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _OOM_MARKERS)


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return " ".join(text.split())[:500]


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:  # the sweep died before we asked to die with it
        return 1
    spec = json.loads(sys.stdin.read())
    out = os.fdopen(int(os.environ[RESULT_FD_ENV]), "w", buffering=1)

    def emit(kind: str, **fields) -> None:
        out.write(json.dumps({"type": kind, **fields}) + "\n")
        out.flush()

    import torch

    torch.set_flush_denormal(True)  # first: before any parallel op creates the thread pool
    config = spec["config"]
    torch.set_num_threads(int(config["threads"]))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass

    try:
        _measure(spec, emit)
    except Exception as exc:  # the model could not be built or loaded: one line to the sweep
        emit("fatal", error=_one_line(exc), oom=_is_oom(exc))
        return 0
    out.close()
    return 0


def _measure(spec: dict, emit) -> None:
    import functools
    import tempfile

    import safetensors.torch
    import torch

    from ..measure import memory
    from ..measure.device import sync_function
    from ..measure.energy import open_meter
    from ..measure.latency import TimingPolicy, time_until_precise, warm_up
    from ..zoo import get

    config = spec["config"]
    device = config["device"]
    policy = TimingPolicy(**spec["policy"])
    sync_or_none = sync_function(device)
    sync = sync_or_none or (lambda: None)
    cuda = device.startswith("cuda")
    if cuda:
        torch.backends.cudnn.benchmark = True  # autotuned during each batch size's warm-up

    entry = get(spec["model"], spec["input_size"])  # imports the model's library only
    memory.memory_mode()  # glibc's initial threshold, fixed: cold start as in a fresh user process
    baseline = memory.rss_bytes()

    t0 = time.perf_counter()
    model = entry.build("cpu").to(device)
    sync()
    build_s = time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="dnnbench-") as tmp:
        path = os.path.join(tmp, "weights.safetensors")
        safetensors.torch.save_model(model, path)
        memory.release_free_memory()
        memory.reset_peak()
        t0 = time.perf_counter()
        safetensors.torch.load_model(model, path, device=device)  # as a user loads a safetensors file
        sync()
        load_s = time.perf_counter() - t0
        load_peak = memory.peak_rss_bytes()
    memory.release_free_memory()
    loaded = memory.rss_bytes()

    meter, energy_reason = open_meter(device)
    if meter is not None:
        policy = TimingPolicy(**{**spec["policy"], "min_seconds": max(1.0, policy.min_seconds)})
    generator = torch.Generator().manual_seed(0)

    def make_input(batch: int):
        # random normal values: never zeros, never denormals
        x = torch.randn(batch, 3, entry.input_size, entry.input_size, generator=generator)
        return x.to(device)

    first = make_input(spec["batch_sizes"][0])
    with torch.inference_mode():
        sync()
        t0 = time.perf_counter()
        model(first)
        sync()
        first_s = time.perf_counter() - t0
    del first
    emit("cold", cold_build_s=build_s, cold_load_s=load_s, cold_first_s=first_s, mem_baseline_bytes=baseline,
         mem_loaded_bytes=loaded, mem_load_peak_bytes=load_peak)

    max_memory = config.get("max_memory")
    for batch in spec["batch_sizes"]:
        emit("start", batch_size=batch)
        cell = {"batch_size": batch, "energy_source": meter.source if meter else None,
                "energy_reason": energy_reason, "target_ci": policy.target_ci}
        started = time.perf_counter()
        try:
            memory.memory_mode()
            if cuda:
                torch.cuda.empty_cache()
            memory.reset_peak()
            x = make_input(batch)
            with torch.inference_mode():
                # memory phase: the first passes at this batch size, peak without history
                first_passes = []
                while not first_passes or (len(first_passes) < 2 and first_passes[0] < 0.5):
                    t0 = time.perf_counter()
                    model(x)
                    sync()
                    first_passes.append(time.perf_counter() - t0)
                peak = memory.peak_rss_bytes()
                memory.speed_mode()
                step = functools.partial(model, x)
                warm = warm_up(step, policy, sync_or_none, prior=tuple(first_passes))
                if cuda:  # after warm-up, so cuDNN's autotuning trials are not counted
                    memory.cuda_reset_peak(torch.device(device))
                window = meter.begin() if meter else None
                result = time_until_precise(step, policy, sync_or_none)
                joules = meter.end(window) if meter else None
                if cuda:
                    cell.update(memory.cuda_peaks(torch.device(device)))
                    cell["mem_nvml_bytes"], _ = memory.nvml_process_bytes(torch.device(device).index or 0)
            del x, step
        except Exception as exc:
            status = "oom" if _is_oom(exc) else "error"
            emit("cell", **cell, status=status, error=_one_line(exc), cell_wall_s=time.perf_counter() - started)
            if status == "oom":
                return
            continue
        cell.update(
            status="ok", error=None,
            latency_median_s=result.median, latency_p90_s=result.p90, latency_p99_s=result.p99,
            latency_ci_low_s=result.ci_low, latency_ci_high_s=result.ci_high, samples=result.n,
            images_per_s=batch / result.median, time_per_image_s=result.median / batch,
            mem_peak_bytes=peak, stop_reason=result.stop_reason, ci_rel=result.ci_rel,
            warmup_n=warm.n, warmup_s=warm.seconds, timed_s=result.timed_s, window_s=result.window_s,
            latency_samples=result.samples, cell_wall_s=time.perf_counter() - started)
        if joules is not None and result.window_s > 0:
            cell.update(energy_per_image_j=joules / (result.n * batch), power_w=joules / result.window_s)
        if max_memory and peak and peak > max_memory:
            from ..units import format_bytes

            cell.update(status="oom", error=f"peak resident set {format_bytes(peak)} is above --max-memory "
                                            f"{format_bytes(max_memory)}")
            emit("cell", **cell)
            return
        emit("cell", **cell)


if __name__ == "__main__":
    sys.exit(main())
