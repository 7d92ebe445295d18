"""The kernels scenario (`dnnbench predict`): builds models on the meta device and records their
kernels, or times kernels on this machine; user code (a model file) runs here, never in the process
that asked.

Its spec is ``{"profile": [{"name", "input_size", "batch"}...]}`` (one ``profile`` record per model, or
``error``), or ``{"time": [key...], "dtype": "float32", "work": {key: [macs, bytes]}, "busy": {...}}``:
one ``kernel`` record per key (seconds, calls, what other processes took meanwhile, whether that
disturbed it, how often it was timed, or the error that stopped it).

Kernels are timed under the sweep's rules (``busy``: ``on_busy``, ``wait_s``, ``retries``, as a
sweep's `RunConfig.busy_spec`): kernels are timed in windows of at least GROUP_S whose load of other
processes is read (a kernel's own milliseconds are below the 10 ms ticks the counters count); before a
window that follows a disturbed one the machine is sampled and, with ``wait``, waited for (two waits
in vain stop the waiting until a window finds it quiet again, as in a sweep); a disturbed window is
timed again, and the less disturbed attempt kept and flagged if still disturbed. ``stop`` ends at the
first busy sample (a ``busy`` record). A kernel whose time is impossible for its work on this machine
(`implausible`) is timed again, whatever the load said.
"""

from __future__ import annotations

import os
import time

TORCH = True
GROUP_S = 1.0  # kernels timed between two readings of what other processes used
# a kernel slower than this many times what its MACs and bytes need at the machine's measured peak
# and copy bandwidth (plus the fixed cost of a call) is not its time: it is timed again
IMPLAUSIBLE = 100.0
CALL_FLOOR_S = 50e-6  # dispatch and thread start of one small call, above what any quiet kernel needed


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


def implausible(seconds: float | None, work, speed: tuple[float, float]) -> bool:
    """Whether ``seconds`` is beyond what the kernel's ``work`` ([MACs, bytes]) can take on this machine."""
    if seconds is None or not work:
        return False
    macs, nbytes = work
    need = max(2 * macs / speed[0], nbytes / speed[1])
    return seconds > CALL_FLOOR_S + IMPLAUSIBLE * need


class _Quiet:
    """The sweep's busy rules over windows of kernels (see the module)."""

    def __init__(self, spec: dict, threads: int, emit):
        self.mode = spec.get("on_busy", "wait")
        self.wait_s = float(spec.get("wait_s", 30.0))
        self.retries = int(spec.get("retries", 1)) if self.mode == "wait" else 0
        self.threads, self.emit = threads, emit
        self.own = tuple(p for p in (os.getpid(), os.getppid(), spec.get("parent")) if p)
        # waits in vain so far, counted across the caller's kernel workers (as a sweep counts across its own)
        self.check_next, self.futile = True, int(spec.get("futile", 0))

    def busy_now(self, seconds: float):
        from ..measure import busy

        load = busy.sample(seconds, self.own)
        return load, load is not None and load.disturbed(self.threads)

    def before_window(self) -> bool:
        """Wait for quiet as the mode says; False when the scenario must stop (``stop``)."""
        if not self.check_next:
            return True
        load, busy_now = self.busy_now(0.3)
        if not busy_now:
            self.futile = 0
            return True
        if self.mode == "stop":
            self.emit("busy", load=load.describe())
            return False
        if self.mode != "wait" or self.futile >= 2 or self.wait_s <= 0:
            return True
        self.emit("wait", load=load.describe(), limit_s=self.wait_s)
        t0 = time.monotonic()
        while time.monotonic() - t0 < self.wait_s:
            if not self.busy_now(1.0)[1]:
                self.futile = 0
                return True
        self.futile += 1
        return True

    def window(self, keys: list, one) -> tuple[dict, object]:
        """({key: (seconds, calls, error)}, load) of the attempt least disturbed."""
        from ..measure import busy

        best, attempts = None, 0
        while True:
            attempts += 1
            window = busy.Window(self.own)
            results = {key: one(key) for key in keys}
            load = window.end()
            excess = load.excess(self.threads) if load else 0.0
            if best is None or excess < best[2]:
                best = (results, load, excess)
            disturbed = load is not None and load.disturbed(self.threads)
            self.check_next = disturbed
            if not disturbed or attempts > self.retries or self.futile >= 2:
                return best[0], best[1]
            if not self.before_window():
                return best[0], best[1]


def _time(spec: dict, emit) -> None:
    """Time each kernel of ``spec["time"]`` (see the module)."""
    import torch

    from ..measure.kernels import replay, time_call

    dtype, threads = getattr(torch, spec.get("dtype", "float32")), torch.get_num_threads()
    work = spec.get("work") or {}
    quiet = _Quiet(spec.get("busy") or {}, threads, emit)

    def one(key: str) -> tuple:
        emit("start", key=key)
        try:
            return (*time_call(replay(key, dtype)), None)
        except (Exception, SystemExit) as exc:
            return None, 0, " ".join(f"{type(exc).__name__}: {exc}".split())[:300]

    with torch.inference_mode():
        speed = _machine_speed(threads)
        pending = list(spec["time"])
        while pending:
            if not quiet.before_window():
                return
            keys, start = [], time.monotonic()
            while pending and (not keys or time.monotonic() - start < GROUP_S):
                keys.append(pending.pop(0))
            results, load = quiet.window(keys, one)
            excess = load.excess(threads) if load else None
            disturbed = bool(load is not None and load.disturbed(threads))
            for key, (seconds, calls, error) in results.items():
                timed = 1
                if implausible(seconds, work.get(key), speed):  # a preemption inside its few calls
                    quiet.check_next = True
                    quiet.before_window()
                    again = one(key)
                    timed += 1
                    if again[0] is not None and again[0] < seconds:
                        seconds, calls, error = again
                emit("kernel", key=key, seconds=seconds, calls=calls, contention=excess, disturbed=disturbed,
                     implausible=implausible(seconds, work.get(key), speed), timed=timed, error=error)
            emit("futile", count=quiet.futile)  # the caller carries it to its next kernel worker


def run(spec: dict, emit) -> int:
    import torch

    if "time" in spec:
        _time(spec, emit)
    else:
        torch.set_num_threads(1)  # building on the meta device is single-threaded Python
        _profile(spec["profile"], emit)
    return 0
