"""The probe scenario: the machine's software and the peak FLOP/s of each precision a run measures,
for the run's record (measured by a worker, so the sweep's process runs no operator)."""

from __future__ import annotations

TORCH = True


def run(spec: dict, emit) -> int:
    from ..measure.device import environment, peak_flops, peak_flops_by_precision

    env = environment(spec["device"], spec["threads"])
    peaks = peak_flops_by_precision(spec["device"], spec["threads"], sorted({"fp32", *spec["precisions"]}))
    env.update(peaks["fp32"] if "peak_flops" in peaks["fp32"] else peak_flops(spec["device"], spec["threads"]))
    env["peak_by_precision"] = peaks
    emit("environment", **env)
    return 0
