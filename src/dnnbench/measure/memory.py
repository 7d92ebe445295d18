"""Memory of the measuring process: resident set (CPU) and the CUDA counters.

CPU figures come from ``/proc/self/status``: ``VmRSS`` (now) and ``VmHWM`` (the peak). The peak is
reset to the current resident set by writing ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0).
The peak of a batch size must not depend on what ran before it in the same process, yet glibc keeps
freed memory and serves later, smaller batches from it. So each batch size starts with a memory
phase: freed heap is returned to the system (``malloc_trim``), the mmap threshold is fixed low
(``memory_mode``: every block above 128 KiB is its own mapping, returned the moment it is freed),
the peak is reset, and the first passes run. The peak is then the same whether or not batch size 64
ran before (tested; within 1% for ResNet-50). Timing runs after, in ``speed_mode``: freed memory is
kept for the next pass (in the main arena no block is mapped apart and the heap is never trimmed), as a caching allocator
(jemalloc, tcmalloc: what PyTorch's CPU launcher ``torch.backends.xeon.run_cpu`` preloads) keeps it.
Every torch worker starts in it (`worker.main`). glibc's default maps each block above 32 MiB apart
and unmaps it when freed, so a pass at batch 16 faulted every large activation in again, zeroed by
the kernel: efficientnet_b1 in eager spent 49% of its time so (112,000 page faults a pass, 274 ms
against 140 ms kept), by an amount that moved with the host's load. ONNX Runtime and OpenVINO keep
their own arenas, and did not fault either way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
from pathlib import Path

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4  # mallopt parameters
MEMORY_MODE_THRESHOLD = 128 * 1024
DEFAULT_MMAP_MAX = 65536  # glibc's: how many blocks may be mapped apart at once
KEPT_TRIM_THRESHOLD = 2 ** 31 - 1  # mallopt takes an int: the heap's free top is never given back


def _status_kib(field: str, pid: int | str = "self") -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def rss_bytes(pid: int | str = "self") -> int | None:
    """Current resident set size in bytes (None where /proc is unavailable)."""
    kib = _status_kib("VmRSS", pid)
    return None if kib is None else kib * 1024


def peak_rss_bytes(pid: int | str = "self") -> int | None:
    """Peak resident set size since the process started or since the last reset_peak()."""
    kib = _status_kib("VmHWM", pid)
    if kib is not None:
        return kib * 1024
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    except (ImportError, OSError):
        return None


def reset_peak() -> bool:
    """Reset the peak resident set to the current one; False where the kernel does not support it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


_libc = None


def _glibc():
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name) if name else False
        except OSError:
            _libc = False
        if _libc and not (hasattr(_libc, "malloc_trim") and hasattr(_libc, "mallopt")):
            _libc = False  # not glibc (musl, macOS): nothing to tune
    return _libc


def release_free_memory() -> None:
    """Collect garbage and give freed heap pages back to the system (glibc malloc_trim)."""
    gc.collect()
    libc = _glibc()
    if libc:
        libc.malloc_trim(0)


def memory_mode() -> bool:
    """Large blocks mapped apart and unmapped when freed, free heap returned: peaks without history."""
    libc = _glibc()
    ok = (bool(libc) and libc.mallopt(_M_MMAP_MAX, DEFAULT_MMAP_MAX) == 1
          and libc.mallopt(_M_MMAP_THRESHOLD, MEMORY_MODE_THRESHOLD) == 1
          and libc.mallopt(_M_TRIM_THRESHOLD, MEMORY_MODE_THRESHOLD) == 1)
    _mode[0] = "memory" if ok else "system"
    release_free_memory()
    return ok


def speed_mode() -> bool:
    """Freed memory kept for the next pass, for timing: every block the calling thread asks for served
    from the main arena's heap, none mapped apart, and the heap never trimmed. A pass in steady state
    then faults no page in: glibc's own steady state (mmap threshold at most 32 MiB, trim threshold
    twice that) still maps larger blocks apart and unmaps them when freed. (Other threads' arenas
    still map a block beyond their 64 MiB heaps, and free a heap left empty.)"""
    libc = _glibc()
    ok = (bool(libc) and libc.mallopt(_M_MMAP_MAX, 0) == 1
          and libc.mallopt(_M_TRIM_THRESHOLD, KEPT_TRIM_THRESHOLD) == 1)
    _mode[0] = "kept" if ok else "system"
    return ok


_mode = ["system"]  # the mode `speed_mode` or `memory_mode` last set ("system": neither took)


def allocator() -> str:
    """The allocator's mode this process last set, for the run's record: ``kept`` (speed mode, which
    the worker contract sets and times in: no page faulted in again in steady state), ``memory``
    (memory mode) or ``system`` (glibc's default, or not glibc)."""
    return _mode[0]


def total_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


# ------------------------------------------------------------------------------------------------
# CUDA


def cuda_reset_peak(device) -> None:
    import torch

    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)


def cuda_peaks(device) -> dict:
    """torch's peak allocated and reserved bytes since the last cuda_reset_peak()."""
    import torch

    torch.cuda.synchronize(device)
    return {"mem_cuda_allocated_bytes": int(torch.cuda.max_memory_allocated(device)),
            "mem_cuda_reserved_bytes": int(torch.cuda.max_memory_reserved(device))}


def nvml_process_bytes(device_index: int, pid: int | None = None) -> tuple[int | None, str | None]:
    """Device memory this process holds as NVML sees it (CUDA context included), or (None, reason)."""
    try:
        import pynvml
    except ImportError:
        return None, "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
    pid = os.getpid() if pid is None else pid
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == pid and proc.usedGpuMemory is not None:
                return int(proc.usedGpuMemory), None
        return None, "NVML lists no memory for this process (inside a container, NVML sees host PIDs)"
    except pynvml.NVMLError as exc:
        return None, f"NVML error: {exc}"


def oom_kills() -> int | None:
    """How many processes the kernel's out-of-memory killer has ended: machine-wide
    (``/proc/vmstat``) plus this process's cgroup (v2 ``memory.events``, v1 ``memory.oom_control``);
    None where no counter is readable. A SIGKILL with no rise in it came from someone else."""
    total, found = 0, False
    sources = [("/proc/vmstat", "oom_kill ")]
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            hierarchy, controllers, path = line.split(":", 2)
            if hierarchy == "0":
                sources.append((f"/sys/fs/cgroup{path}/memory.events", "oom_kill "))
            elif "memory" in controllers.split(","):
                sources.append((f"/sys/fs/cgroup/memory{path}/memory.oom_control", "oom_kill "))
    except (OSError, ValueError):
        pass
    for path, prefix in sources:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(prefix):
                    total += int(line.split()[1])
                    found = True
        except (OSError, ValueError, IndexError):
            continue
    return total if found else None
