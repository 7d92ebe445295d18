"""What we run on: the device, its synchronisation, the thread count, the machine's environment and
its measured peak FLOP/s."""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from importlib import metadata
from pathlib import Path

from ..errors import UserError
from . import memory

# each precision's tensor dtype, by torch's name: the one table (int8's values are int8; a backend that
# runs int8 between float layers, or a kernel of an int8 setup timed in eager, says so where it does)
DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "int8": "int8"}


def check_device(text: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``, checked against this machine; a UserError otherwise."""
    text = text.strip().lower()
    if text == "cpu":
        return text
    if not re.fullmatch(r"cuda(:\d+)?", text):
        raise UserError(f"unknown device {text!r}: use cpu, cuda or cuda:N")
    import torch

    if not torch.cuda.is_available():
        raise UserError(f"device {text!r} asked for, but this machine or this PyTorch build has no usable CUDA GPU: "
                        "use --device cpu")
    index = int(text.split(":")[1]) if ":" in text else 0
    if index >= torch.cuda.device_count():
        raise UserError(f"device {text!r}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0")
    return f"cuda:{index}"


def default_threads() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota where one is set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def sync_function(device: str):
    """What to call so that the host clock sees the device's work finished; None on the CPU, whose
    work is done when the call returns."""
    if device.startswith("cuda"):
        import functools

        import torch

        return functools.partial(torch.cuda.synchronize, torch.device(device))
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


SOFTWARE = ("torch", "torchvision", "timm", "numpy", "onnxruntime", "openvino", "executorch", "ai-edge-litert",
            "coremltools")


def software() -> dict:
    """This interpreter's, its libraries' and dnnbench's versions (None: not installed), read from the
    packages' metadata without importing them: each side of a pair reports its own (`run --versus
    python=...`). dnnbench's own: a version that times otherwise starts a new usual (`store.usual`)."""
    from .._version import __version__

    return {"executable": sys.executable, "python": platform.python_version(), "dnnbench": __version__,
            **{name: _version(name) for name in SOFTWARE}}


def machine_environment(device: str = "cpu") -> dict:
    """The part of ``environment`` that fingerprints the machine (``setup.machine_id``), read without
    importing torch: the sweep needs it to plan, before any worker starts."""
    env = {"cpu_model": _cpu_model(), "cpu_count": os.cpu_count(), "memory_bytes": memory.total_memory_bytes(),
           "gpu": None}
    if device.startswith("cuda"):
        env["gpu"] = _gpu_name(int(device.split(":")[1]) if ":" in device else 0)
    return env


def _gpu_name(index: int) -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(index))
        return name.decode() if isinstance(name, bytes) else name
    except Exception:  # no NVML: torch, as environment() does
        import torch

        return torch.cuda.get_device_name(index)


def environment(device: str, threads: int) -> dict:
    """The machine and software a run measured on, as plain data stored with the run."""
    import torch

    from .._version import __version__

    env = {
        "hostname": platform.node(),
        "os": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": default_threads(),
        "memory_bytes": memory.total_memory_bytes(),
        "threads": threads,
        "interop_threads": torch.get_num_interop_threads(),
        "device": device,
        "python": platform.python_version(),
        "dnnbench": __version__,
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "timm": _version("timm"),
        "numpy": _version("numpy"),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "allocator": memory.allocator(),
        "cuda_build": torch.version.cuda,
        "gpu": None,
        "gpu_driver": None,
        "cudnn": None,
    }
    governor = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    env["cpu_governor"] = governor.read_text().strip() if governor.exists() else None
    if device.startswith("cuda"):
        index = int(device.split(":")[1])
        env["gpu"] = torch.cuda.get_device_name(index)
        env["cudnn"] = torch.backends.cudnn.version()
        try:
            import pynvml

            pynvml.nvmlInit()
            env["gpu_driver"] = pynvml.nvmlSystemGetDriverVersion()
        except Exception:  # driver version is informative only
            pass
    return env


def peak_flops(device: str, threads: int, size: int | None = None, repeats: int = 5, dtype=None,
               min_seconds: float = 1.0) -> dict:
    """The machine's measured ceiling: FLOP/s of a large matrix product (2 n^3 FLOPs), best of at
    least ``repeats`` products and ``min_seconds`` after one warm-up, at the run's thread count (the
    best, because a neighbour's load only ever slows a product down). fp32 by default; for int8 the
    product is torch._int_mm (int8 in, int32 out) and the figure is integer operations per second.
    ``size`` None: 2048, or smaller where one product takes over 50 ms (a precision emulated in
    software: its ceiling is as low at 512 as at 2048, and a product of 2048 would take seconds)."""
    import torch

    dtype = dtype or torch.float32
    torch.set_num_threads(threads)
    sync = sync_function(device) or (lambda: None)

    def operands(n: int):
        if dtype == torch.int8:
            return [torch.randint(-128, 128, (n, n), device=device, dtype=dtype) for _ in range(2)]
        return [torch.randn(n, n, device=device, dtype=dtype) for _ in range(2)]

    product, name = (torch._int_mm, "torch._int_mm") if dtype == torch.int8 else (torch.mm, "torch.mm")
    with torch.inference_mode():
        for n in ([size] if size else [512, 1024, 2048]):
            a, b = operands(n)
            product(a, b)  # warm-up
            sync()
            t0 = time.perf_counter()
            product(a, b)
            sync()
            if time.perf_counter() - t0 > 0.05:
                break
        times: list[float] = []
        while len(times) < repeats or sum(times) < min_seconds:
            t0 = time.perf_counter()
            product(a, b)
            sync()
            times.append(time.perf_counter() - t0)
    flops = 2 * n**3
    times.sort()
    return {"peak_flops": flops / times[0], "peak_flops_median": flops / times[len(times) // 2],
            "peak_flops_method": f"{name} {n}x{n} {str(dtype).replace('torch.', '')}, best of {len(times)}"}




def peak_flops_by_precision(device: str, threads: int, precisions) -> dict:
    """``peak_flops`` for each precision (fp32's is the one measured first): {precision: figures}, or
    {precision: {"error": why}} where this device has no such product. Each takes about a second;
    a precision emulated in software measures slow, which is its true ceiling here."""
    import torch

    out = {}
    for precision in precisions:
        try:
            out[precision] = peak_flops(device, threads, dtype=getattr(torch, DTYPE_NAMES[precision]))
        except (RuntimeError, NotImplementedError, KeyError) as exc:
            out[precision] = {"error": " ".join(f"{type(exc).__name__}: {exc}".split())[:200]}
    return out
