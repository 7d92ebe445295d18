"""Setups compared, model by model: how much faster each setup runs a model than eager fp32 on the
same machine, device and threads, and which setup is fastest at each batch size.

The speed-up is eager fp32's latency over the setup's, from the two cells of one batch size, with its
95% interval (`compare.latency_ratio`: paired over shared rounds where there are two or more, else
from the two medians' intervals). A setup that computes wrong results (`data.wrong_results`) is
shown with its speed-up, flagged, and is never the best.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..setup import Setup
from .compare import Ratio, latency_ratio
from .data import Measured, wrong_results


@dataclass(frozen=True)
class Speedup:
    """One model in one setup at one batch size against eager fp32: ``ratio`` is eager fp32's latency
    over this setup's (above 1: this setup is faster); ``wrong`` says why its results are wrong, or None."""

    model: str
    input_size: int
    setup: Setup
    batch_size: int
    ratio: Ratio
    wrong: str | None
    cell: dict

    @property
    def verdict(self) -> str:
        """``faster`` or ``slower`` than eager fp32 with 95% confidence, else ``tie``."""
        return "faster" if self.ratio.low > 1 else "slower" if self.ratio.high < 1 else "tie"


def _where(m: Measured) -> tuple:
    """What two setups must share to be compared: the model, its input size, machine, device, threads."""
    return (m.model, m.input_size, m.setup.machine, m.setup.device, m.setup.threads)


def speedups(measured: list[Measured]) -> list[Speedup]:
    """Every (model, setup, batch size) measured both in that setup and in its eager fp32 baseline."""
    by_setup = {(m.model, m.input_size, m.setup): m for m in measured}
    out = []
    for m in measured:
        if m.setup == m.setup.baseline():
            continue
        base = by_setup.get((m.model, m.input_size, m.setup.baseline()))
        if base is None:
            continue
        wrong = wrong_results(m)
        for batch, cell in m.ok.items():
            ratio = latency_ratio(base.ok[batch], cell) if batch in base.ok else None
            if ratio is not None:
                out.append(Speedup(m.model, m.input_size, m.setup, batch, ratio, wrong, cell))
    return sorted(out, key=lambda s: (s.model, s.input_size, s.batch_size, -s.ratio.value))


@dataclass(frozen=True)
class Best:
    """The fastest setup of one model at one batch size, among ``candidates`` setups with right results.

    ``speedup``: eager fp32's latency over the best's (None where eager fp32 was not measured; the
    best may be eager fp32 itself, at 1). ``runner_up`` and ``margin`` (its latency over the best's):
    when ``margin.verdict`` is ``tie`` the two cannot be told apart at this precision."""

    model: str
    input_size: int
    batch_size: int
    setup: Setup
    cell: dict
    candidates: int
    speedup: Ratio | None
    runner_up: Setup | None
    margin: Ratio | None

    @property
    def clear(self) -> bool:
        """The best is faster than the runner-up with 95% confidence (or is the only candidate)."""
        return self.margin is None or self.margin.verdict == "slower"


def best_setups(measured: list[Measured]) -> list[Best]:
    """For each model (on each machine, device and thread count) and batch size, its fastest setup."""
    groups: dict[tuple, list[Measured]] = {}
    for m in measured:
        if wrong_results(m) is None:
            groups.setdefault(_where(m), []).append(m)
    out = []
    for (model, input_size, *_), ms in groups.items():
        for batch in sorted({b for m in ms for b in m.ok}):
            ranked = sorted(((m.ok[batch]["latency_median_s"], m.setup.key(), m) for m in ms
                             if batch in m.ok and m.ok[batch].get("latency_median_s")), key=lambda t: t[:2])
            if not ranked:
                continue
            best = ranked[0][2]
            base = next((m for m in ms if m.setup == best.setup.baseline() and batch in m.ok), None)
            runner = ranked[1][2] if len(ranked) > 1 else None
            out.append(Best(
                model, input_size, batch, best.setup, best.ok[batch], len(ranked),
                speedup=latency_ratio(base.ok[batch], best.ok[batch]) if base is not None else None,
                runner_up=runner.setup if runner else None,
                margin=latency_ratio(runner.ok[batch], best.ok[batch]) if runner else None))
    return sorted(out, key=lambda b: (b.model, b.input_size, b.setup.machine or "", b.batch_size))


@dataclass(frozen=True)
class Deployment:
    """One model in one setup as a deployment sees it, at its smallest batch size measured: what it
    ships (``artifact_bytes``), how long it took to prepare, to start again from those files (caches
    cold, then warm), and how fast it runs. ``cell``: that batch size's cell (None where the setup
    converted but was not timed here: ``untimed`` says why)."""

    model: str
    input_size: int
    setup: Setup
    batch_size: int
    cell: dict | None
    artifact_bytes: int | None
    prepare_s: float | None
    restart_cold_s: float | None
    restart_warm_s: float | None
    restart_reason: str | None
    untimed: str | None
    wrong: str | None


def deployments(measured: list[Measured]) -> list[Deployment]:
    """Every (model, setup) with a cell that ran or converted, at its smallest such batch size."""
    out = []
    for m in measured:
        usable = {b: c for b, c in sorted(m.cells.items()) if c["status"] in ("ok", "untimed")}
        if not usable:
            continue
        batch, cell = next(iter(usable.items()))
        timed = cell["status"] == "ok"
        out.append(Deployment(m.model, m.input_size, m.setup, batch, cell if timed else None, cell.get("artifact_bytes"),
                              cell.get("cold_prepare_s"), cell.get("restart_cold_s"), cell.get("restart_warm_s"),
                              cell.get("restart_reason"), None if timed else cell.get("error"), wrong_results(m)))
    return sorted(out, key=lambda d: (d.model, d.input_size, d.setup.key()))


@dataclass(frozen=True)
class Failure:
    """A setup that did not run a model at all: none of its cells ran or converted (``why``: the first
    error, e.g. "... does not convert for litert: ...")."""

    model: str
    input_size: int
    setup: Setup
    status: str
    why: str


def not_converted(measured: list[Measured]) -> list[Failure]:
    """The (model, setup) pairs whose every cell failed; oom and timeout are limits, not failures to
    convert, and are left to the cells' table."""
    out = []
    for m in measured:
        cells = list(m.cells.values())
        if not cells or any(c["status"] in ("ok", "untimed", "oom", "timeout") for c in cells):
            continue
        first = min(cells, key=lambda c: c["batch_size"])
        out.append(Failure(m.model, m.input_size, m.setup, first["status"], first.get("error") or ""))
    return sorted(out, key=lambda f: (f.model, f.input_size, f.setup.key()))
