"""Energy from hardware counters: RAPL (Linux powercap) on CPUs, NVML's total-energy counter on
NVIDIA GPUs. Where no counter is readable the figure is absent, with the reason; it is never
estimated.

A meter is read at both ends of a cell's timed window (after the device is synchronised), so energy
and time per image come from the same passes. RAPL figures are package-wide and NVML figures are
board-wide: on a shared machine they are an upper bound for the model.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

POWERCAP_ENV = "DNNBENCH_POWERCAP_ROOT"  # tests point this at a fake sysfs tree


@dataclass
class _Zone:
    path: Path
    range_uj: int


class RaplMeter:
    """The package domains of RAPL: energy_uj of every ``intel-rapl:N`` (or ``amd-rapl``) zone, summed.

    The counter wraps at ``max_energy_range_uj``; a window sees at most one wrap per zone (minutes at
    server power, far longer than a cell's window), which is undone here.
    """

    source = "rapl"
    scope = "CPU package (all processes)"

    def __init__(self, zones: list[_Zone]):
        self.zones = zones

    def begin(self) -> list[int]:
        return [int(z.path.joinpath("energy_uj").read_text()) for z in self.zones]

    def end(self, start: list[int]) -> float:
        joules = 0.0
        for zone, first in zip(self.zones, start, strict=True):
            last = int(zone.path.joinpath("energy_uj").read_text())
            if last < first:
                last += zone.range_uj
            joules += (last - first) / 1e6
        return joules


class NvmlMeter:
    """NVML's total-energy counter of one GPU (Volta and newer), in millijoules since driver load."""

    source = "nvml"
    scope = "GPU board (all processes on it)"

    def __init__(self, handle, pynvml):
        self.handle = handle
        self.nvml = pynvml

    def begin(self) -> int:
        return self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)

    def end(self, start: int) -> float:
        return (self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) - start) / 1e3


def _rapl(root: Path):
    if not root.exists():
        return None, f"no RAPL energy counter: {root} does not exist (virtual machines and containers rarely expose one)"
    zones = []
    for path in sorted(root.glob("*-rapl:*")):
        if path.name.count(":") != 1:  # sub-zones (core, uncore, dram) lie inside their package
            continue
        try:
            name = path.joinpath("name").read_text().strip()
        except OSError:
            continue
        if not name.startswith("package"):
            continue
        try:
            int(path.joinpath("energy_uj").read_text())
            range_uj = int(path.joinpath("max_energy_range_uj").read_text())
        except PermissionError:
            return None, (f"RAPL counters in {root} are readable by root only (Linux >= 5.10, CVE-2020-8694): "
                          f"run `sudo chmod a+r {root}/*/energy_uj` (or add a udev rule) to measure CPU energy")
        except (OSError, ValueError) as exc:
            return None, f"RAPL counter {path} cannot be read: {exc}"
        zones.append(_Zone(path, range_uj))
    if not zones:
        return None, f"no RAPL package domain under {root}"
    return RaplMeter(zones), None


def _nvml(index: int):
    try:
        import pynvml
    except ImportError:
        return None, "nvidia-ml-py is not installed (pip install nvidia-ml-py) so the GPU energy counter cannot be read"
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except pynvml.NVMLError as exc:
        return None, f"this GPU has no readable NVML energy counter (Volta or newer needed): {exc}"
    return NvmlMeter(handle, pynvml), None


def open_meter(device: str):
    """(meter, None) for the device's energy counter, or (None, reason) where there is none."""
    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        return _nvml(index)
    return _rapl(Path(os.environ.get(POWERCAP_ENV, "/sys/class/powercap")))


def idle_power(meter, seconds: float = 2.0, sleep=time.sleep, clock=time.perf_counter) -> float:
    """Average power in watts over ``seconds`` of doing nothing: the floor under every figure."""
    start, t0 = meter.begin(), clock()
    sleep(seconds)
    joules = meter.end(start)
    return joules / (clock() - t0)
