"""The kernels scenario (`dnnbench predict`): builds models on the meta device and records their
kernels, or times kernels on this machine; user code (a model file) runs here, never in the process
that asked.

Its spec is ``{"profile": [{"name", "input_size", "batch"}...]}`` (one ``profile`` record per model, or
``error``), or ``{"time": [key...], "dtype": "float32", "work": {key: [macs, bytes]}, "busy": {...}}``:
one ``kernel`` record per key (seconds, calls, what other processes took meanwhile, whether that
disturbed it, how often it was timed, or the error that stopped it; a key prefixed with a runtime's
name is timed as that runtime runs it, `backends.runtime_kernels.Timer`), or ``{"in_model": [{"name",
"input_size", "batch"}...], "passes": 5, "busy": {...}}``: one ``in_model`` record per model, the
seconds of one call of each of its kernels timed inside real forward passes of it (`measure.kernels.
KernelClock`), with the window's load, or ``error``.

Kernels are timed under the sweep's rules (``busy``: ``on_busy``, ``wait_s``, ``retries``, as a
sweep's `RunConfig.busy_spec`): kernels are timed in windows of at least GROUP_S whose load of other
processes is read (a kernel's own milliseconds are below the 10 ms ticks the counters count); before a
window that follows a disturbed one the machine is sampled and, with ``wait``, waited for (two waits
in vain stop the waiting until a window finds it quiet again, as in a sweep); a disturbed window is
timed again, and the less disturbed attempt kept and flagged if still disturbed. ``stop`` ends at the
first busy sample (a ``busy`` record). A kernel whose time is impossible for its work on this machine
(`implausible`) is timed again, whatever the load said; a time it repeats within `REPEATED` is its own
cost, and kept (flagged with its window's load, as any other: a disturbed one is timed again later).
"""

from __future__ import annotations

import time

TORCH = True
GROUP_S = 1.0  # kernels timed between two readings of what other processes used
# a kernel slower than this many times what its MACs and bytes need at the machine's measured peak
# and copy bandwidth (plus the fixed cost of a call) is not its time: it is timed again
IMPLAUSIBLE = 100.0
CALL_FLOOR_S = 50e-6  # dispatch and thread start of one small call, above what most quiet kernels need
REPEATED = 2.0  # two timings of a kernel this close are its cost, not a preemption's


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


def _machine_speed(threads: int) -> tuple[float, float]:
    """(FLOP/s, bytes/s) this process reaches: the best of a few fp32 matrix products and copies."""
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    src = torch.empty(32 << 20, dtype=torch.uint8)
    dst = torch.empty_like(src)
    flops, copy = 0.0, 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        torch.mm(a, b)
        flops = max(flops, 2 * 1024**3 / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        dst.copy_(src)
        copy = max(copy, 2 * src.numel() / (time.perf_counter() - t0))
    return flops, copy


def implausible(seconds: float | None, work, speed: tuple[float, float], again: float | None = None) -> bool:
    """Whether ``seconds`` is beyond what the kernel's ``work`` ([MACs, bytes]) can take on this machine;
    with ``again``, its other timing: a time the kernel repeats (within `REPEATED`) is its own, however
    slow for its work (a tiny depthwise convolution took 110 to 180 µs here, against a floor of 50 µs
    and 0.7 µs of work): a preemption does not strike a median twice alike."""
    if seconds is None or not work:
        return False
    if again is not None and max(seconds, again) <= REPEATED * min(seconds, again):
        return False
    macs, nbytes = work
    need = max(2 * macs / speed[0], nbytes / speed[1])
    return seconds > CALL_FLOOR_S + IMPLAUSIBLE * need


def _watch(spec: dict, threads: int, emit):
    """The sweep's own busy watch (`latency.BusyWatch`), over windows of kernels instead of cells; the
    caller (``parent``) counts as ours, as a sweep does."""
    from .latency import BusyWatch

    return BusyWatch({"on_busy": "wait", "wait_s": 30.0, "retries": 1, **spec, "sweep": spec.get("parent")},
                     threads, "cpu", emit)


def _quiet_enough(watch) -> bool:
    """Before a window: wait for quiet as the mode says (after a disturbed window, or at the first);
    False when the scenario must stop (``stop``)."""
    if not watch.check_next:
        return True
    _, quiet = watch.wait_for_quiet(restart=False)
    return quiet or watch.mode != "stop"


def _timed_window(watch, pending: list, one, timed_ahead=lambda: False) -> tuple[dict, object]:
    """({key: (seconds, calls, error)}, load) of the least disturbed attempt at timing a window: the
    first keys of ``pending``, as many as GROUP_S of timing holds (one at least), and those timed
    ahead with them (``timed_ahead()``: a runtime's group, timed as one, ends in the window it began).
    A disturbed window is timed again, the same keys, as a disturbed cell is (``retries``, two waits
    in vain at most)."""
    from ..measure import busy

    best, keys = None, None
    for attempt in range(1 + watch.retries):
        window = busy.Window(watch.own)
        results, start = {}, time.monotonic()
        for key in keys or pending:
            if keys is None and results and time.monotonic() - start >= GROUP_S and not timed_ahead():
                break
            results[key] = one(key)
        keys = list(results)
        load = window.end()
        excess = load.excess(watch.cores) if load else 0.0
        if best is None or excess < best[2]:
            best = (results, load, excess)
        watch.check_next = load is not None and load.disturbed(watch.cores)
        if not watch.check_next:
            watch.futile = 0
            break
        if watch.futile >= 2 or attempt == watch.retries or not _quiet_enough(watch):
            break
    return best[0], best[1]


def _time(spec: dict, emit) -> None:
    """Time each kernel of ``spec["time"]`` (see the module)."""
    import torch

    from ..backends import runtime_kernels
    from ..measure.kernels import SETTLED_CALLS, replay, spread, time_call

    dtype, threads = getattr(torch, spec.get("dtype", "float32")), torch.get_num_threads()
    work = spec.get("work") or {}
    runtime = runtime_kernels.Timer(spec["time"], threads, work)  # a runtime's own kernels
    watch = _watch(spec.get("busy") or {}, threads, emit)

    def one(key: str, again: bool = False) -> tuple:
        emit("start", key=key)
        try:
            if runtime_kernels.is_runtime(key):  # as its runtime runs it
                return (*runtime.time(key, again), None)
            return (*time_call(replay(key, dtype), settled=SETTLED_CALLS), None)
        except (Exception, SystemExit) as exc:
            return None, 0, " ".join(f"{type(exc).__name__}: {exc}".split())[:300]

    with torch.inference_mode():
        speed = _machine_speed(threads)
        # a runtime's kernels group by group (`Timer.order`: each group's together, so that it is timed in one
        # window, the groups in an order drawn at random); eager's spread likewise, so that the machine's
        # drift over seconds falls on every model alike
        pending = runtime.order + spread([k for k in spec["time"] if not runtime_kernels.is_runtime(k)])
        while pending:
            if not _quiet_enough(watch):
                return
            results, load = _timed_window(watch, pending, one, lambda: bool(runtime.ready))
            del pending[:len(results)]  # a window times the first of them
            excess = load.excess(threads) if load else None
            disturbed = bool(load is not None and load.disturbed(threads))
            for key, (seconds, calls, error) in results.items():
                timed, other = 1, None
                if implausible(seconds, work.get(key), speed):  # a preemption inside its few calls
                    watch.check_next = True
                    _quiet_enough(watch)
                    again = one(key, again=True)
                    timed += 1
                    if again[0] is not None:
                        other = max(seconds, again[0])
                        if again[0] < seconds:
                            seconds, calls, error = again
                # repeated, it is the kernel's cost (stored with the window's load: a disturbed one is timed
                # again by a later call that waits for quiet)
                emit("kernel", key=key, seconds=seconds, calls=calls, contention=excess, disturbed=disturbed,
                     implausible=implausible(seconds, work.get(key), speed, other), timed=timed, error=error)
            emit("futile", count=watch.futile)  # the caller carries it to its next kernel worker


def _in_model(spec: dict, emit) -> None:
    """Time each kernel of each model of ``spec["in_model"]`` inside a real forward pass of it (see the module)."""
    import torch

    from ..measure import busy
    from ..measure.kernels import as_recorded, in_model_times
    from ..zoo import get

    threads = torch.get_num_threads()
    watch = _watch(spec.get("busy") or {}, threads, emit)
    for job in spec["in_model"]:
        emit("start", name=job["name"], input_size=job.get("input_size"), batch=job["batch"])
        try:
            entry = get(job["name"], job.get("input_size"))
            dtype = getattr(torch, spec.get("dtype", "float32"))  # the precision its kernels are timed alone in
            model = entry.build("cpu").to(dtype)
            example = torch.randn(job["batch"], 3, entry.input_size, entry.input_size, dtype=dtype)
            if not _quiet_enough(watch):
                return
            window = busy.Window(watch.own)
            _, times = in_model_times(model, example, passes=int(spec.get("passes", 5)))
            times = {as_recorded(k, dtype): s for k, s in times.items()}  # the profile's keys
            load = window.end()
            watch.check_next = disturbed = bool(load is not None and load.disturbed(threads))
            emit("in_model", name=job["name"], input_size=entry.input_size, batch=job["batch"], seconds=times,
                 contention=load.excess(threads) if load else None, disturbed=disturbed)
        except (Exception, SystemExit) as exc:  # one model's failure is its own record
            emit("error", name=job["name"], input_size=job.get("input_size"), batch=job["batch"],
                 error=" ".join(f"{type(exc).__name__}: {exc}".split())[:300])


def run(spec: dict, emit) -> int:
    import torch

    if "time" in spec:
        _time(spec, emit)
    elif "in_model" in spec:
        _in_model(spec, emit)
    else:
        torch.set_num_threads(1)  # building on the meta device is single-threaded Python
        _profile(spec["profile"], emit)
    return 0
