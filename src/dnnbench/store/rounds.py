"""Rounds: a cell measured again in a later worker process adds its samples to the stored cell.

One process sees one memory layout, one thread placement and a few seconds of the machine's load;
two sweeps on a shared machine differ by more than the interval of either. With ``--rounds R`` the
sweep visits every model R times, each time in a fresh worker, and each visit's figures are folded
into the stored cell here: the samples are pooled, the median and percentiles are taken over all
of them, and the interval also covers how much the rounds' medians differ
(``latency.rounds_interval``). Once a run's rounds are done, its cells' intervals over the rounds
take the drift pooled over all of them (``with_drift``): two rounds of one cell say little, the
run's cells together say how far this machine moves between rounds.

Pure functions over the stored row and the new record; the store calls ``merge`` inside one write
transaction, so two sweeps adding rounds to one file at once cannot lose one.
"""

from __future__ import annotations

import math

from ..measure.latency import Drift, median, rounds_interval
from ..measure.tails import tail_figures

_SUMMED = ("warmup_n", "warmup_s", "timed_s", "window_s", "cell_wall_s", "busy_attempts", "busy_wait_s")
# the largest over rounds: memory peaks, and the load of others (one disturbed round skews the pooled samples)
_PEAKS = ("mem_peak_bytes", "mem_cuda_allocated_bytes", "mem_cuda_reserved_bytes", "mem_nvml_bytes",
          "contention", "steal", "disturbed", "gpu_other_processes")


def rounds_of(row: dict) -> int:
    """How many rounds a stored cell holds (cells stored before rounds existed hold one)."""
    return int(row.get("rounds") or 1)


def complete(row: dict, rounds: int) -> bool:
    """Whether a stored cell needs no further round: it failed, a later round failed, or it has them all."""
    return row["status"] != "ok" or bool(row.get("error")) or rounds_of(row) >= rounds


def first(cell: dict) -> dict:
    """A cell's figures as stored after its first round."""
    out = dict(cell)
    if cell.get("status") == "ok" and cell.get("latency_median_s") is not None:
        out.update(rounds=1, round_medians=[cell["latency_median_s"]])
    else:
        out.update(rounds=None, round_medians=None)
    return out


def merge(stored: dict, new: dict, rounds: int) -> dict | None:
    """The stored cell with one more round folded in; None if it needs no more rounds.

    A round that fails (oom, crashed, timeout, error) keeps the figures already taken: the cell
    stays ``ok`` with the rounds it has, and its ``error`` says which round failed and how."""
    if complete(stored, rounds):
        return None
    if new.get("status") != "ok":
        k = rounds_of(stored) + 1
        return {**stored, "error": f"round {k} of {rounds} ended in {new.get('status')}: {new.get('error')}",
                "run_id": new.get("run_id", stored.get("run_id")), "measured_at": new.get("measured_at"),
                "round_runs": _joined(stored, new)}
    return pool(stored, new)


def pool(stored: dict, new: dict) -> dict:
    """Two ``ok`` versions of one cell taken in different rounds, as one: ``new`` is a round just
    measured, or a stored cell of its own rounds (`dnnbench merge`). Samples pooled, the median and
    percentiles over all of them, the interval over every round's median."""
    old_samples = list(stored.get("latency_samples") or [])
    new_samples = list(new.get("latency_samples") or [])
    pooled = sorted(old_samples + new_samples)
    new_medians = list(new.get("round_medians") or [new["latency_median_s"]])
    medians = list(stored.get("round_medians") or [stored["latency_median_s"]]) + new_medians
    mid = median(pooled)
    batch = stored["batch_size"]
    out = {**stored, **{key: new.get(key) for key in ("run_id", "measured_at") if new.get(key) is not None}}
    out.update(
        latency_samples=old_samples + new_samples, samples=len(pooled), latency_median_s=mid,
        **tail_figures(pooled),
        **_interval(pooled, medians, mid),
        images_per_s=batch / mid, time_per_image_s=mid / batch,
        rounds=rounds_of(stored) + len(new_medians), round_medians=medians, round_runs=_joined(stored, new),
        error=stored.get("error") or new.get("error"),
        stop_reason=stored.get("stop_reason") if stored.get("stop_reason") != "converged" else new.get("stop_reason"))
    for key in _SUMMED:
        if stored.get(key) is not None and new.get(key) is not None:
            out[key] = stored[key] + new[key]
    for key in _PEAKS:
        values = [v for v in (stored.get(key), new.get(key)) if v is not None]
        out[key] = max(values) if values else None
    old_j, new_j = _joules(stored, batch), _joules(new, batch)
    if old_j is not None and new_j is not None and out.get("window_s"):
        out["energy_per_image_j"] = (old_j + new_j) / (len(pooled) * batch)
        out["power_w"] = (old_j + new_j) / out["window_s"]
    else:  # energy from only some rounds would not describe the pooled samples
        out["energy_per_image_j"] = out["power_w"] = None
    return out


def with_drift(cell: dict, drift: Drift) -> dict:
    """``cell`` (``ok``, of two rounds or more) with its interval over the rounds taken from the drift
    of its run's cells (`latency.rounds_interval`): only its interval and ``ci_rel`` change."""
    pooled = sorted(cell.get("latency_samples") or [])
    medians = list(cell.get("round_medians") or [])
    if len(medians) < 2 or not pooled:
        return cell
    return {**cell, **_interval(pooled, medians, cell["latency_median_s"], drift)}


def _interval(pooled: list[float], medians: list[float], mid: float, drift: Drift | None = None) -> dict:
    """A cell's interval over its rounds (`latency.rounds_interval`), as the stored fields."""
    low, high = rounds_interval(pooled, medians, drift) or (None, None)
    return {"latency_ci_low_s": low, "latency_ci_high_s": high,
            "ci_rel": max(mid - low, high - mid) / mid if low is not None and mid > 0 else None}


def _joined(stored: dict, new: dict) -> list[str] | None:
    """The runs of the two's rounds together, one entry per round (a run that measured two rounds is
    named twice: a copy taken between them holds one); None where either's are unknown (stored
    before schema 7)."""
    a, b = round_runs(stored), round_runs(new)
    return None if a is None or b is None else a + b


def round_runs(cell: dict) -> list[str] | None:
    """The run of each round ``cell`` holds (or of each round that failed after them), None where unknown.
    Databases written before a run was named once per round name it once however many rounds it
    measured; such a list of one run is counted out to the cell's rounds."""
    runs = cell.get("round_runs")
    if runs is None:
        return None
    runs = list(runs)
    if len(set(runs)) == 1 and len(runs) < rounds_of(cell):
        runs = runs * rounds_of(cell)
    return runs


def _joules(cell: dict, batch: int) -> float | None:
    e, n = cell.get("energy_per_image_j"), cell.get("samples")
    if e is None or not n or math.isnan(e):
        return None
    return e * n * batch
