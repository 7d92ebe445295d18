"""The latency scenario: one worker measures one model at each of its batch sizes, as the sweep
asked (``ModelJob.spec()``), streaming its records to the sweep (the worker contract: see the
package). Every line of user code (importing the model's file, its constructor, counting its
operations on the meta device, its forward pass) runs here, never in the sweep's process; a Python
error in one batch size is that cell's, and the next batch size is measured.

Records: ``stage`` (imports, build, static, load, first pass: each is watched by the sweep's
timeout), ``static`` (the model's static figures), ``cold`` (baseline and loaded memory,
build/load/first-pass seconds), ``start`` (a batch size begins, or begins again after waiting for a
quiet machine: the sweep's watchdog attributes a crash, a kill or a timeout to it), ``pass`` (the
time of one pass at this batch size: the sweep scales the cell's limit to it), ``wait`` (waiting
for the machine to be quiet), ``busy`` (the machine is busy and ``--on-busy stop``), ``cell`` (the
figures of one batch size), ``fatal`` (the model could not be built or loaded).
"""

from __future__ import annotations

import os
import time

from ..setup import is_reference
from . import ChannelLost, one_line

_OOM_MARKERS = ("out of memory", "can't allocate memory", "not enough memory", "cannot allocate memory")


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _OOM_MARKERS)


TORCH = True  # the contract flushes denormals and sets the threads first


def run(spec: dict, emit) -> int:
    """Measure one model at each of its batch sizes (see the module's records)."""
    try:
        _measure(spec, emit)
    except ChannelLost:
        raise
    except (Exception, SystemExit) as exc:  # the model could not be built or loaded: one line to the sweep
        emit("fatal", error=one_line(exc), oom=_is_oom(exc), stage=_stage[0])
    return 0


_stage = ["imports"]  # the stage a fatal error belongs to
LONG_PASS_S = 0.5  # a pass this long is its own memory phase, and its round's whole warm-up
CHECK_IMAGES = 8  # images compared with eager fp32 to judge a setup's correctness


def built_model(spec: dict, stage=None):
    """The job's model (``spec``: model, base, input_size, weights_file, setup) built on the setup's
    device in its layout, with the user's weights or, without them, normalisation statistics
    calibrated on random inputs; and ``make_input(batch)``, random normal images in that layout, the
    same sequence in every process. (The latency scenario builds its own: it times each stage.)"""
    import torch

    from ..zoo import get
    from ..zoo.weights import calibrate_norms_

    setup = spec["setup"]
    if stage:
        stage("build")
    entry = get(spec.get("base") or spec["model"], spec["input_size"], spec.get("weights_file"))
    model = entry.build("cpu").to(setup["device"])
    if entry.weights_file:
        from ..zoo.weights import load_user_weights_, read_state_dict

        load_user_weights_(model, read_state_dict(entry.weights_file), entry.weights_file, entry.name)
    generator = torch.Generator().manual_seed(0)
    layout = torch.channels_last if setup.get("layout") == "channels_last" else torch.contiguous_format

    def make_input(batch: int):
        x = torch.randn(batch, 3, entry.input_size, entry.input_size, generator=generator)
        return x.to(setup["device"]).contiguous(memory_format=layout)

    if stage:
        stage("prepare")
    if not entry.weights_file:
        calibrate_norms_(model, make_input(2))
    return model.to(memory_format=layout), make_input


def _prepare(model, setup: dict, make_input, batch: int):
    """The setup's backend made ready for ``model``: (forward step, the Prepared, correctness figures).
    Correctness: the logits of ``CHECK_IMAGES`` images against eager fp32's on the same inputs and
    weights, taken before the backend converts the model (``max_rel_error``, ``top1_agreement``); eager
    fp32 is the reference itself, so it has none. The inputs come at ``batch`` images a pass, the first
    batch size, so that a backend compiled per shape compiles no extra shape."""
    import math
    import tempfile

    import torch

    from ..backends import compare_outputs, get_backend

    backend = get_backend(setup["backend"])
    reference_setup = is_reference(setup)
    inputs = [make_input(batch) for _ in range(math.ceil(CHECK_IMAGES / batch))]
    reference = None
    if not reference_setup:
        with torch.inference_mode():
            reference = torch.cat([model(x).float().cpu() for x in inputs])
    prepared = backend.prepare(model, inputs[0], precision=setup["precision"], device=setup["device"],
                               threads=int(setup["threads"]), workdir=tempfile.gettempdir())
    correctness = {}
    if reference is not None and not prepared.untimed:
        with torch.inference_mode():
            outputs = torch.cat([prepared.forward(x).float().cpu() for x in inputs])
        correctness = compare_outputs(reference, outputs, setup["precision"])
    return prepared.forward, prepared, correctness


def _static(entry, emit, stage) -> None:
    """The model's static figures (operations counted on the meta device), for the sweep to store."""
    from ..measure.static import static_figures

    stage("static")
    try:
        emit("static", **static_figures(entry).to_dict())
    except Exception as exc:  # the timed figures do not need them
        emit("static_failed", error=one_line(exc))
    stage("build")


def _timed_load(model, device: str, sync) -> tuple[float, int | None]:
    """(seconds, peak resident bytes) of loading ``model``'s weights back from a safetensors file, as a
    user loads one."""
    import tempfile

    import safetensors.torch

    from ..measure import memory
    from ..zoo.weights import load_weights

    with tempfile.TemporaryDirectory(prefix="dnnbench-") as tmp:
        path = os.path.join(tmp, "weights.safetensors")
        safetensors.torch.save_model(model, path)
        memory.release_free_memory()
        memory.reset_peak()
        t0 = time.perf_counter()
        load_weights(model, path, device)
        sync()
        return time.perf_counter() - t0, memory.peak_rss_bytes()


def _measure(spec: dict, emit) -> None:
    """Build, load and prepare the model (the cold start, one ``cold`` record), then each batch size."""
    import torch

    from ..measure import memory
    from ..measure.device import sync_function
    from ..measure.energy import open_meter
    from ..measure.latency import TimingPolicy
    from ..zoo import get
    from ..zoo.weights import calibrate_norms_

    def stage(name: str) -> None:
        _stage[0] = name
        emit("stage", stage=name)

    setup = spec["setup"]
    device = setup["device"]
    policy = TimingPolicy(**spec["policy"])
    sync_or_none = sync_function(device)
    sync = sync_or_none or (lambda: None)
    cuda = device.startswith("cuda")
    if cuda:
        torch.backends.cudnn.benchmark = True  # autotuned during each batch size's warm-up

    stage("build")
    # imports the model's library (or the user's file) only
    entry = get(spec.get("base") or spec["model"], spec["input_size"], spec.get("weights_file"))
    if spec.get("static"):
        _static(entry, emit, stage)
    memory.memory_mode()  # glibc's initial threshold, fixed: cold start as in a fresh user process
    baseline = memory.rss_bytes()

    t0 = time.perf_counter()
    model = entry.build("cpu").to(device)
    sync()
    build_s = time.perf_counter() - t0
    if entry.weights_file:  # the user's values, in place of the random ones (the load is timed below)
        from ..zoo.weights import load_user_weights_, read_state_dict

        load_user_weights_(model, read_state_dict(entry.weights_file), entry.weights_file, entry.name)

    stage("load")
    load_s, load_peak = _timed_load(model, device, sync)
    memory.release_free_memory()
    loaded = memory.rss_bytes()

    meter, energy_reason = open_meter(device)
    if meter is not None:
        policy = TimingPolicy(**{**spec["policy"], "min_seconds": max(1.0, policy.min_seconds)})
    generator = torch.Generator().manual_seed(0)
    layout = torch.channels_last if setup.get("layout") == "channels_last" else torch.contiguous_format

    def make_input(batch: int):
        # random normal values: never zeros, never denormals
        x = torch.randn(batch, 3, entry.input_size, entry.input_size, generator=generator)
        return x.to(device).contiguous(memory_format=layout)

    stage("prepare")
    if not entry.weights_file:  # trained weights carry their own statistics
        calibrate_norms_(model, make_input(2))  # activations near unit scale: sane for every precision
    model = model.to(memory_format=layout)
    forward, prepared, correctness = _prepare(model, setup, make_input, spec["batch_sizes"][0])
    del model  # what runs now is the backend's: a deployment holds only that (eager and compile keep the model)
    memory.release_free_memory()
    if prepared.untimed:  # converted, not runnable here: the conversion stored, each cell saying why
        emit("cold", cold_build_s=build_s, cold_load_s=load_s, cold_prepare_s=prepared.prepare_s,
             artifact_bytes=prepared.artifact_bytes, mem_baseline_bytes=baseline, mem_loaded_bytes=loaded,
             mem_load_peak_bytes=load_peak)
        _stage[0] = None
        for batch in spec["batch_sizes"]:
            emit("cell", batch_size=batch, status="untimed", error=prepared.untimed)
        return

    stage("first pass")
    first = make_input(spec["batch_sizes"][0])
    with torch.inference_mode():
        sync()
        t0 = time.perf_counter()
        forward(first)
        sync()
        first_s = time.perf_counter() - t0
    del first
    emit("cold", cold_build_s=build_s, cold_load_s=load_s, cold_prepare_s=prepared.prepare_s, cold_first_s=first_s,
         artifact_bytes=prepared.artifact_bytes, artifact_files=prepared.files,
         mem_baseline_bytes=baseline, mem_loaded_bytes=loaded, mem_load_peak_bytes=load_peak, **correctness)
    _stage[0] = None

    _measure_batches(spec, emit, forward, make_input, policy, (meter, energy_reason), stage, sync_or_none)


def _measure_batches(spec: dict, emit, forward, make_input, policy, energy, stage, sync_or_none) -> None:
    """Each batch size of the job: a memory phase, then the timed passes under the busy watch; one
    ``cell`` record each (a Python error is that cell's, and the next batch size is measured)."""
    import functools

    import torch

    from ..measure import memory

    config, setup = spec["config"], spec["setup"]
    device = setup["device"]
    cuda = device.startswith("cuda")
    sync = sync_or_none or (lambda: None)
    meter, energy_reason = energy
    watch = BusyWatch(spec.get("busy") or {}, int(setup["threads"]), device, emit)
    max_memory = config.get("max_memory")
    peaks_known = set(spec.get("peaks_known") or ())  # batch sizes whose memory peak an earlier round took
    for batch in spec["batch_sizes"]:
        emit("start", batch_size=batch)
        cell = {"batch_size": batch, "energy_source": meter.source if meter else None,
                "energy_reason": energy_reason, "target_ci": policy.target_ci}
        started = time.perf_counter()
        measure_peak = batch not in peaks_known
        try:
            (memory.memory_mode if measure_peak else memory.speed_mode)()
            if cuda:
                torch.cuda.empty_cache()
            x = make_input(batch)
            if hasattr(forward, "ready"):  # a backend that compiles per shape: that is preparation, not a pass
                stage("prepare")
                forward.ready(tuple(x.shape))
                _stage[0] = None
                emit("start", batch_size=batch)
            memory.reset_peak()
            with torch.inference_mode():
                # memory phase: the first passes at this batch size, peak without history. Where an
                # earlier round took the peak, one pass in speed mode begins the warm-up instead: passes
                # in memory mode fault every activation in anew (3x slower for MobileNet-V2 at batch 8),
                # and a peak measured again in another process is the same peak
                first_passes = []
                while not first_passes or (measure_peak and len(first_passes) < 2 and first_passes[0] < LONG_PASS_S):
                    t0 = time.perf_counter()
                    forward(x)
                    sync()
                    first_passes.append(time.perf_counter() - t0)
                peak = memory.peak_rss_bytes() if measure_peak else None
                emit("pass", batch_size=batch, seconds=min(first_passes))
                memory.speed_mode()
                step = functools.partial(forward, x)

                # after warm-up, so cuDNN's autotuning trials are not counted
                reset = functools.partial(memory.cuda_reset_peak, torch.device(device)) if cuda else None
                # a first pass of seconds is the whole warm-up, in any round: in the main job every such
                # cell's first pass, even in memory mode, agreed with the next within 10%, and one more
                # pass was a tenth of a heavy cell's round (a quick cell's two rounds took 9 such passes
                # where its one window had taken 8)
                settled = first_passes[0] >= LONG_PASS_S
                timing = watch.time_cell(batch, step, policy, sync_or_none, tuple(first_passes), meter, reset,
                                         prior_settles=settled)
                if timing is None:  # --on-busy stop: the sweep ends here
                    return
                if cuda:
                    cell.update(memory.cuda_peaks(torch.device(device)))
                    cell["mem_nvml_bytes"], _ = memory.nvml_process_bytes(torch.device(device).index or 0)
            del x, step
        except (Exception, SystemExit) as exc:
            status = "oom" if _is_oom(exc) else "error"
            emit("cell", **cell, status=status, error=one_line(exc), cell_wall_s=time.perf_counter() - started)
            if status == "oom":
                return
            continue
        result, warm, joules = timing.result, timing.warm, timing.joules
        cell.update(
            status="ok", error=None,
            latency_median_s=result.median, latency_p90_s=result.p90, latency_p99_s=result.p99,
            latency_p90_high_s=result.p90_high, latency_p99_high_s=result.p99_high,
            latency_ci_low_s=result.ci_low, latency_ci_high_s=result.ci_high, samples=result.n,
            images_per_s=batch / result.median, time_per_image_s=result.median / batch,
            mem_peak_bytes=peak, stop_reason=result.stop_reason, ci_rel=result.ci_rel,
            warmup_n=warm.n, warmup_s=warm.seconds, timed_s=result.timed_s, window_s=result.window_s,
            latency_samples=result.samples, cell_wall_s=time.perf_counter() - started, **timing.busy_fields())
        if joules is not None and result.window_s > 0:
            cell.update(energy_per_image_j=joules / (result.n * batch), power_w=joules / result.window_s)
        if max_memory and peak and peak > max_memory:
            from ..units import above

            cell.update(status="oom", error=f"peak resident set {above(peak, max_memory)}")
            emit("cell", **cell)
            return
        emit("cell", **cell)


class Timing:
    """One cell's timed passes, and what others used of the machine meanwhile."""

    def __init__(self, result, warm, joules, load, attempts: int, waited_s: float, cores: int, gpu=None):
        self.result, self.warm, self.joules, self.load = result, warm, joules, load
        self.attempts, self.waited_s, self.cores, self.gpu = attempts, waited_s, cores, gpu

    @property
    def disturbed(self) -> bool:
        return _busy(self.load, self.gpu, self.cores)

    def excess(self) -> float:
        """How much others disturbed it: another process on the GPU outweighs any CPU share."""
        return (self.load.excess(self.cores) if self.load else 0.0) + (1.0 if self.gpu and self.gpu[0] else 0.0)

    def busy_fields(self) -> dict:
        fields = {"busy_attempts": self.attempts, "busy_wait_s": self.waited_s}
        if self.load is not None:
            fields.update(contention=self.load.share, steal=self.load.steal, disturbed=int(self.disturbed))
        if self.gpu is not None:
            fields.update(gpu_other_processes=self.gpu[0])
            fields.setdefault("disturbed", int(self.disturbed))
        return fields


def _busy(load, gpu, cores: int) -> bool:
    """Whether others disturbed a window: they took the CPU our ``cores`` need, or shared the GPU."""
    return (load is not None and load.disturbed(cores)) or bool(gpu and gpu[0])


class BusyWatch:
    """Handles a busy machine around each cell's timed passes (``--on-busy``):

    - ``wait``: before a cell (the worker's first, or one after a disturbed cell) wait up to
      ``wait_s`` for the machine to be quiet; time the cell; if others disturbed its timed window,
      wait and time it again, up to ``retries`` times, and keep the least disturbed attempt.
      Two waits in a row that end with the machine still busy (counted across the sweep's workers)
      stop the waiting until a cell finds the machine quiet: a load that lasts is measured (and
      flagged) rather than waited out.
    - ``measure``: time every cell at once; the load is recorded and disturbed cells flagged.
    - ``stop``: a busy machine before a cell, or a disturbed timed window, ends the sweep there.
    """

    def __init__(self, spec: dict, threads: int, device: str, emit):
        from ..measure.busy import cores_needed

        self.mode = spec.get("on_busy", "measure")
        self.wait_s = float(spec.get("wait_s", 0))
        self.retries = int(spec.get("retries", 0)) if self.mode == "wait" else 0
        self.cores, self.device, self.emit = cores_needed(device, threads), device, emit
        self.gpu_index = int(device.split(":")[1]) if device.startswith("cuda") else None
        # ours: this worker, its parent (the sweep, or the fork server) and the sweep
        self.own = tuple(dict.fromkeys(p for p in (os.getpid(), os.getppid(), spec.get("sweep")) if p))
        self.check_next = True  # the first cell of a worker is checked
        self.futile = int(spec.get("futile", 0))  # waits in vain so far in this sweep

    def _load_now(self, seconds: float):
        """(CPU load of others over ``seconds``, other processes on our GPU), and whether they disturb."""
        from ..measure import busy

        load, gpu = busy.sample(seconds, self.own), self._gpu()
        return load, gpu, _busy(load, gpu, self.cores)

    def _gpu(self):
        from ..measure import busy

        return None if self.gpu_index is None else busy.gpu_others(self.gpu_index, self.own)

    @staticmethod
    def _describe(load, gpu) -> str:
        parts = [load.describe()] if load is not None else []
        if gpu and gpu[0]:
            parts.append(f"{gpu[0]} other process{'es' if gpu[0] > 1 else ''} used the GPU")
        return ", ".join(parts) or "others used the machine"

    def wait_for_quiet(self, restart: bool = True, **where) -> tuple[float, bool]:
        """Seconds waited, and whether the machine is quiet now. The ``wait`` and ``busy`` records carry
        ``where`` (the batch size, say); ``restart``: a ``start`` record after a wait, from which the
        sweep counts the cell's limit again."""
        load, gpu, busy_now = self._load_now(0.3)
        if not busy_now:
            self.futile = 0
            return 0.0, True
        if self.mode == "stop":
            self.emit("busy", **where, load=self._describe(load, gpu))
            return 0.0, False
        if self.mode != "wait" or self.futile >= 2 or self.wait_s <= 0:
            return 0.0, False
        self.emit("wait", **where, load=self._describe(load, gpu), limit_s=self.wait_s)
        t0 = time.monotonic()
        quiet = False
        while time.monotonic() - t0 < self.wait_s:
            if not self._load_now(1.0)[2]:
                quiet = True
                break
        waited = time.monotonic() - t0
        self.futile = 0 if quiet else self.futile + 1
        if restart:
            self.emit("start", **where)  # the cell's limit counts from here
        return waited, quiet

    def time_cell(self, batch, step, policy, sync, prior, meter, before_timing=None,
                  prior_settles: bool = False) -> Timing | None:
        """Warm up and time one cell as the mode says; None when the sweep must stop (``stop``)."""
        from ..measure import busy
        from ..measure.latency import time_until_precise, warm_up

        best, waited, attempts = None, 0.0, 0
        while True:
            if self.check_next:
                w, quiet = self.wait_for_quiet(batch_size=batch)
                waited += w
                if not quiet and self.mode == "stop":
                    return None
            attempts += 1
            warm = warm_up(step, policy, sync, prior=prior if attempts == 1 else (),
                           prior_settles=prior_settles and attempts == 1)
            if before_timing:
                before_timing()
            window = busy.Window(self.own)
            energy = meter.begin() if meter else None
            result = time_until_precise(step, policy, sync)
            joules = meter.end(energy) if meter else None
            timing = Timing(result, warm, joules, window.end(), attempts, waited, self.cores, self._gpu())
            if best is None or timing.excess() < best.excess():
                best = timing
            self.check_next = timing.disturbed
            if not timing.disturbed:
                self.futile = 0
                break
            if self.mode == "stop":
                self.emit("busy", batch_size=batch, load=self._describe(timing.load, timing.gpu))
                return None
            if attempts > self.retries or self.futile >= 2:
                break
        best.attempts, best.waited_s = attempts, waited
        return best


