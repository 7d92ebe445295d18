"""Machines compared: one model on every machine, and each machine's speed relative to a reference.

A machine's speed is not one number. Canziani et al. 2016 found time linear in operations on one
machine; on another the line has another slope (and memory-bound models fall off it differently), so
the ratio of two machines' times varies model by model. It is given per model, with its interval, and
each machine's own line of time against operations.

Cells of two machines were never measured in the same rounds, so their ratio's interval comes from the
two medians' intervals (`compare.latency_ratio` unpaired), never from pairing their rounds. Pure: no I/O.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from ..setup import Setup
from .compare import Ratio, latency_ratio
from .data import Measured
from .fits import LinearFit, linear_fit


def _runtime(setup: Setup) -> tuple:
    return (setup.backend, setup.precision, setup.layout)


def machine_setups(everything: list[Measured], setup: Setup) -> dict[str, Setup]:
    """Each machine's setup of ``setup``'s runtime (backend, precision, layout): ``setup`` itself on its
    machine, elsewhere the one with the most measured cells (its device and threads are that machine's)."""
    counts: dict[Setup, int] = {}
    for m in everything:
        if _runtime(m.setup) == _runtime(setup):
            counts[m.setup] = counts.get(m.setup, 0) + len(m.ok)
    out = {setup.machine: setup}
    for s in sorted(counts, key=lambda s: (-counts[s], s.key())):
        if counts[s]:
            out.setdefault(s.machine, s)
    return out


@dataclass(frozen=True)
class MachineRatio:
    """One model's time on ``machine`` over its time on ``reference`` at one batch size."""

    model: str
    input_size: int
    batch_size: int
    machine: str
    reference: str
    macs: int | None
    ratio: Ratio
    cell: dict
    reference_cell: dict


def ratios(everything: list[Measured], setup: Setup, batch: int) -> list[MachineRatio]:
    """Every model measured at ``batch`` both on ``setup``'s machine (the reference) and on another."""
    setups = machine_setups(everything, setup)
    by = {(m.model, m.input_size, m.setup): m for m in everything}
    out = []
    for machine, other in sorted(setups.items()):
        if machine == setup.machine:
            continue
        for (model, size, s), m in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            if s != other or batch not in m.ok:
                continue
            ref = by.get((model, size, setup))
            if ref is None or batch not in ref.ok:
                continue
            unpaired = [{**c, "round_medians": None} for c in (m.ok[batch], ref.ok[batch])]
            r = latency_ratio(*unpaired)
            if r is not None:
                out.append(MachineRatio(model, size, batch, machine, setup.machine, m.macs, r, m.ok[batch],
                                        ref.ok[batch]))
    return out


def time_lines(everything: list[Measured], setups: dict[str, Setup], batch: int) -> dict[str, LinearFit]:
    """Each machine's line of time per image (s) against operations (MACs) at ``batch``, where it has
    at least 3 models of distinct operations."""
    out = {}
    for machine, s in setups.items():
        points = [(m.macs, m.ok[batch]["time_per_image_s"]) for m in everything
                  if m.setup == s and m.macs and batch in m.ok and m.ok[batch].get("time_per_image_s")]
        if len({x for x, _ in points}) >= 3:
            out[machine] = linear_fit(*zip(*points, strict=True))
    return out


def summary(found: list[MachineRatio]) -> dict[str, dict]:
    """Per machine: the models compared, the median ratio and its range over the models, and how many
    models it runs faster, slower, or indistinguishably (95% intervals)."""
    out: dict[str, dict] = {}
    for machine in sorted({r.machine for r in found}):
        mine = [r for r in found if r.machine == machine]
        values = [r.ratio.value for r in mine]
        out[machine] = {"models": len(mine), "median": statistics.median(values), "low": min(values),
                        "high": max(values),
                        "faster": sum(r.ratio.verdict == "faster" for r in mine),
                        "slower": sum(r.ratio.verdict == "slower" for r in mine),
                        "tie": sum(r.ratio.verdict == "tie" for r in mine)}
    return out
