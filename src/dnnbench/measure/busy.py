"""What else uses the machine while we measure: the CPU time of other processes, the time the
hypervisor stole, and on CUDA the other processes on the GPU.

Linux counts, per CPU, the clock ticks spent busy and stolen (``/proc/stat``), and per process its
own ticks (``/proc/PID/stat``). Over a window, the busy ticks of the CPUs this process may run on,
less the ticks of our own processes (the worker and the sweep), are what others took from us.
Ticks are 10 ms, so a window of one second on two cores resolves 0.5% of the machine.

A window is *disturbed* when others took more than ``DISTURBED_SHARE`` (5%) of the cores our threads
need (others may use the cores we leave idle: one thread on two cores leaves one), or the
hypervisor stole more than ``STEAL_SHARE`` of the time.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

# of the cores our threads need. With as many threads as cores, a thread that loses its core holds
# up the others at every barrier: 7% taken by others slowed MobileNet-v2 18% (benchmarks/busy.py),
# while the background of a quiet machine stayed below 2.5%
DISTURBED_SHARE = 0.05
STEAL_SHARE = 0.05
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _allowed_cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:
        return set(range(os.cpu_count() or 1))


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _cpu_ticks(cpus: set[int]) -> tuple[int, int, int] | None:
    """(busy, steal, total) ticks summed over ``cpus``; None where /proc/stat is unreadable."""
    text = _read("/proc/stat")
    if text is None:
        return None
    busy = steal = total = 0
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        # user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
        v = [int(x) for x in rest.split()[:8]]
        busy += v[0] + v[1] + v[2] + v[5] + v[6]
        steal += v[7]
        total += sum(v)
    return busy, steal, total


def _stat(pid: int | str) -> tuple[str, list[str]] | None:
    """(name, the fields after it) of ``/proc/PID/stat``; None if the process is gone."""
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    # the name may hold spaces and parentheses: it runs from the first "(" to the last ")"
    return text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()


def process_ticks(pid: int) -> int | None:
    """User + system ticks of one process, all its threads; None if it is gone."""
    stat = _stat(pid)
    return None if stat is None else int(stat[1][11]) + int(stat[1][12])


@dataclass(frozen=True)
class Load:
    """What others used during a window: ``cores`` = average cores busy with other processes;
    ``share`` = that over the cores we may use; ``steal`` = share of the time the hypervisor took."""

    cores: float
    share: float
    steal: float
    seconds: float
    allowed: int

    def excess(self, threads: int) -> float:
        """The share of the cores our ``threads`` need that others took (beyond the idle ones)."""
        threads = max(1, min(threads, self.allowed))
        return max(0.0, self.cores - (self.allowed - threads)) / threads

    def disturbed(self, threads: int) -> bool:
        return self.excess(threads) > DISTURBED_SHARE or self.steal > STEAL_SHARE

    def describe(self) -> str:
        text = f"other processes used {self.cores:.1f} of {self.allowed} cores"
        if self.steal > STEAL_SHARE:
            text += f", the hypervisor stole {self.steal:.0%} of the time"
        return text

    def to_dict(self) -> dict:
        return asdict(self)


class Window:
    """Counts what others use between ``Window(own_pids)`` and ``.end()``."""

    def __init__(self, own_pids=()):
        self.cpus = _allowed_cpus()
        self.own = [p for p in own_pids if p]
        self._start = self._snap()

    def _snap(self):
        own = 0
        for pid in self.own:
            own += process_ticks(pid) or 0
        return time.monotonic(), _cpu_ticks(self.cpus), own

    def end(self) -> Load | None:
        """The load of others since the window began; None where the counters are unreadable."""
        t1, cpu1, own1 = self._snap()
        t0, cpu0, own0 = self._start
        if cpu0 is None or cpu1 is None or t1 <= t0:
            return None
        busy, steal, total = (b - a for a, b in zip(cpu0, cpu1, strict=True))
        others = max(0, busy - max(0, own1 - own0))
        n = len(self.cpus)
        if total <= 0:
            return Load(0.0, 0.0, 0.0, t1 - t0, n)
        cores = others / total * n  # ticks, not wall time: counters advance per CPU at _TICK Hz
        return Load(cores, cores / n, steal / total, t1 - t0, n)


def sample(seconds: float, own_pids=()) -> Load | None:
    """The load of others over ``seconds`` from now, this process asleep meanwhile."""
    window = Window(own_pids or (os.getpid(),))
    time.sleep(seconds)
    return window.end()


def busiest_others(seconds: float = 1.0, exclude=(), top: int = 3) -> tuple[Load | None, list[tuple[str, float]]]:
    """The load of others over ``seconds``, and the processes behind it: (name, cores), busiest first.
    ``exclude``: our own pids (their descendants are excluded too)."""
    own = _tree(set(exclude) | {os.getpid()})
    before = _all_ticks()
    window = Window(own)
    time.sleep(seconds)
    load = window.end()
    after = _all_ticks()
    per = []
    for pid, (name, ticks) in after.items():
        if pid in own or pid not in before:
            continue
        used = (ticks - before[pid][1]) / _TICK / seconds
        if used >= 0.05:
            per.append((name, used))
    per.sort(key=lambda p: -p[1])
    return load, per[:top]


def _all_ticks() -> dict[int, tuple[str, int]]:
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _stat(entry)
        if stat is not None:
            out[int(entry)] = (stat[0], int(stat[1][11]) + int(stat[1][12]))
    return out


def _tree(roots: set[int]) -> set[int]:
    """``roots`` and every descendant of them."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        stat = _stat(entry) if entry.isdigit() else None
        if stat is not None:
            children.setdefault(int(stat[1][1]), []).append(int(entry))
    out, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo.extend(children.get(pid, []))
    return out


def gpu_others(index: int, own_pids=()) -> tuple[int, int] | None:
    """(other processes on CUDA device ``index``, the device memory they hold in bytes), from NVML;
    None where NVML is unavailable."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        procs = list(pynvml.nvmlDeviceGetComputeRunningProcesses(handle))
        try:
            procs += list(pynvml.nvmlDeviceGetGraphicsRunningProcesses(handle))
        except pynvml.NVMLError:
            pass
    except Exception:  # no NVML, no driver, or an old one: unknown, not zero
        return None
    own = set(own_pids) | {os.getpid()}
    others = {p.pid: (p.usedGpuMemory or 0) for p in procs if p.pid not in own}
    return len(others), sum(others.values())


def cores_needed(device: str, threads: int) -> int:
    """The cores a timed pass keeps busy: every intra-op thread on the CPU; on CUDA the one thread that
    launches the kernels (the intra-op threads then serve only the rare CPU ops). A GPU hog with one
    busy core of 16 flagged every CUDA cell as CPU-disturbed before (6% > 5%), naming the wrong cause."""
    return 1 if device.startswith("cuda") else threads


def cause(cell: dict) -> str:
    """Why a disturbed cell was flagged, in words, from its figures."""
    parts = []
    if (cell.get("contention") or 0) >= 0.01:
        parts.append(f"other processes used {cell['contention']:.0%} of the cores")
    if (cell.get("steal") or 0) > STEAL_SHARE:
        parts.append(f"the hypervisor stole {cell['steal']:.0%} of the time")
    if cell.get("gpu_other_processes"):
        n = cell["gpu_other_processes"]
        parts.append(f"{n} other process{'es' if n > 1 else ''} used the GPU")
    return ", ".join(parts) or f"other processes used {cell.get('contention') or 0:.0%} of the cores"


def summary(load: Load | None, procs: list[tuple[str, float]], threads: int) -> str | None:
    """The warning line for a busy machine, or None when it is quiet."""
    if load is None or not load.disturbed(threads):
        return None
    names = ", ".join(f"{name} ({cores:.1f})" for name, cores in procs)
    many = len(procs) != 1
    who = f"{len(procs)} other process{'es' if many else ''} ({names})" if procs else "other processes"
    text = f"the machine is busy: {who} {'use' if many else 'uses'} {load.cores:.1f} of {load.allowed} cores"
    if load.steal > STEAL_SHARE:
        text += f" and the hypervisor steals {load.steal:.0%} of the time"
    return text
