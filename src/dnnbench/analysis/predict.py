"""`dnnbench predict`: a model's time per image on this machine from its operation count, by a line
fitted to the models measured here (Canziani et al.: operations predict inference time linearly).

Definitions: the calibration points are (model, macs, time_per_image_s) of the measured models with
an operation count, measured successfully at the batch size; time_per_image_s is the cell's
``time_per_image_s`` (latency of a batch / batch size; computed so when missing). The fit is ordinary
least squares time_per_image_s = slope * macs + intercept (slope in seconds per MAC). Its leave-one-out
relative error for a model is (predicted - measured) / measured, the prediction coming from the line
fitted to the other models only.

A store may hold several setups (machine, device, backend, precision, threads, layout); a fit mixing them would be
meaningless, so `predict` and `predicted_vs_measured` use one: the setup with the most calibration
points at the batch size (ties: the first in sorted order).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from ..setup import Setup
from .data import Measured
from .fits import LinearFit, linear_fit


# Below either bar the figure is still given, but labelled unreliable with the reason.
# R² < 0.5: operations explain less than half of how time per image differs between the measured
# models, so the line is not a trend of this machine, and reading a new model off it is a guess.
MIN_R2 = 0.5
# Leave-one-out median error beyond ±50%: the line misses the typical measured model by more than
# half its time, i.e. it cannot tell a model from one twice as fast; a new model fares no better.
MAX_LOO_MEDIAN = 0.5


@dataclass(frozen=True)
class Prediction:
    """The predicted time per image of ``model`` (``macs`` MACs per image) at ``batch_size``, the line
    it comes from (fitted on ``n`` models of ``setup``), and that line's leave-one-out relative errors
    by model with their median and largest absolute value."""

    model: str
    macs: float
    batch_size: int
    time_per_image_s: float
    fit: LinearFit
    loo_errors: dict[str, float]
    loo_median_abs: float
    loo_max_abs: float
    n: int
    setup: Setup | None = None  # of the calibration

    @property
    def doubts(self) -> list[str]:
        """Why the figure should not be trusted (see MIN_R2, MAX_LOO_MEDIAN); empty when it can be."""
        reasons = []
        if self.fit.r2 < MIN_R2:
            reasons.append(f"the fit explains little: R² = {self.fit.r2:.2f}, below {MIN_R2}")
        if self.loo_median_abs > MAX_LOO_MEDIAN:
            reasons.append(f"the fit misses the measured models by a median ±{self.loo_median_abs:.0%} when each "
                           f"is left out, beyond ±{MAX_LOO_MEDIAN:.0%}")
        if not self.time_per_image_s > 0:
            reasons.append("the fitted line gives no positive time at this operation count")
        return reasons

    @property
    def reliable(self) -> bool:
        return not self.doubts


def _time_per_image(cell: dict, batch: int) -> float | None:
    t = cell.get("time_per_image_s")
    if t is None and cell.get("latency_median_s") is not None:
        t = cell["latency_median_s"] / batch
    return t


def _setup(m: Measured) -> Setup:
    return m.setup


def calibration(models: list[Measured], batch: int) -> list[tuple[str, float, float]]:
    """(model, macs, time_per_image_s) for each model with a positive operation count and a successful
    cell at ``batch`` with a positive time, in the given order. A name that occurs more than once (the
    same model at several input sizes, or several setups) is labelled ``name@input_size`` and, if still
    ambiguous, ``name@input_size/machine/device/backend/precision/threads/layout``."""
    picked = []
    for m in models:
        cell = m.ok.get(batch)
        if not m.macs or m.macs <= 0 or cell is None:
            continue
        t = _time_per_image(cell, batch)
        if t is None or not t > 0:
            continue
        picked.append((m, float(m.macs), float(t)))
    names = [m.model for m, _, _ in picked]
    sized = [f"{m.model}@{m.input_size}" for m, _, _ in picked]
    out = []
    for (m, macs, t), name, size_name in zip(picked, names, sized, strict=True):
        if names.count(name) == 1:
            label = name
        elif sized.count(size_name) == 1:
            label = size_name
        else:
            label = f"{size_name}/" + "/".join(str(v) for v in _setup(m).key())
        out.append((label, macs, t))
    return out


def _loo_predictions(points) -> list[float]:
    macs = np.array([p[1] for p in points], dtype=float)
    times = np.array([p[2] for p in points], dtype=float)
    out = []
    for k in range(len(points)):
        rest = np.arange(len(points)) != k
        out.append(float(linear_fit(macs[rest], times[rest])(macs[k])))
    return out


def loo_errors(points) -> dict[str, float]:
    """Leave-one-out relative errors {model: (predicted - measured) / measured} of the line
    time = slope * macs + intercept over ``points`` = [(model, macs, time), ...]. Needs at least 3
    points and, without any one of them, 2 distinct operation counts; ValueError otherwise (also for
    repeated model names or a time that is not above 0)."""
    points = _checked(points)
    return {p[0]: (pred - p[2]) / p[2] for p, pred in zip(points, _loo_predictions(points), strict=True)}


def _checked(points) -> list:
    points = list(points)
    if len(points) < 3:
        raise ValueError(f"leave-one-out errors need at least 3 points, got {len(points)}")
    names = [p[0] for p in points]
    if len(set(names)) != len(names):
        raise ValueError("leave-one-out errors need distinct model names")
    if any(not p[2] > 0 for p in points):
        raise ValueError("every measured time must be above 0")
    return points


def _one_setup(models: list[Measured], batch: int) -> tuple[Setup | None, list[Measured]]:
    counts: dict[Setup, int] = {}
    for m in models:
        counts.setdefault(_setup(m), 0)
        counts[_setup(m)] += len(calibration([m], batch))
    if not counts:
        return None, []
    best = max(sorted(counts, key=lambda s: tuple(map(str, s.key()))), key=lambda s: counts[s])  # first of the most
    return best, [m for m in models if _setup(m) == best]


def predict(models: list[Measured], macs: float, batch: int, name: str) -> Prediction:
    """Predict ``name``'s time per image at ``batch`` from its ``macs``, with the line fitted to the
    other measured models (``name`` itself is left out of the fit, so a measured figure of it is an
    honest check). Raises `UserError` when ``macs`` is missing or when fewer than 3 models (with an
    operation count, in one setup) were measured at that batch size."""
    if not macs or macs <= 0:
        raise UserError(f"no operation count for {name}, so its time cannot be predicted; check "
                        f"`dnnbench inspect {name}`")
    setup, chosen = _one_setup([m for m in models if m.model != name], batch)
    points = calibration(chosen, batch)
    if len(points) < 3:
        at_batch = ", ".join(p[0] for p in points) or "none"
        counts: dict[int, set] = {}
        for m in models:
            if m.macs and m.model != name:
                for b in m.ok:
                    counts.setdefault(b, set()).add(m.model)
        enough = [b for b in sorted(counts) if len(counts[b]) >= 3]
        hint = f" (batch sizes with enough: {', '.join(map(str, enough))})" if enough else ""
        raise UserError(f"predict needs at least 3 models measured at batch size {batch}; measured: {at_batch}"
                        f"{hint}; run `dnnbench run MODEL... --batch-sizes {batch}` first")
    try:
        fit = linear_fit([p[1] for p in points], [p[2] for p in points])
        errors = loo_errors(points)
    except ValueError as exc:
        raise UserError(f"cannot calibrate on the models measured at batch size {batch} ({exc}); measure models "
                        "of more varied size with `dnnbench run`") from exc
    absolute = [abs(e) for e in errors.values()]
    return Prediction(model=name, macs=float(macs), batch_size=batch, time_per_image_s=float(fit(float(macs))),
                      fit=fit, loo_errors=errors, loo_median_abs=float(statistics.median(absolute)),
                      loo_max_abs=float(max(absolute)), n=len(points), setup=setup)


def predicted_vs_measured(models: list[Measured], batch: int) -> list[tuple[str, float, float]]:
    """(model, measured time per image, leave-one-out predicted time per image) for each calibration
    point at ``batch`` (in one setup, see the module), in order of operations ascending. ValueError
    with fewer than 3 points (see `loo_errors`)."""
    _, chosen = _one_setup(models, batch)
    points = sorted(calibration(chosen, batch), key=lambda p: (p[1], p[0]))
    points = _checked(points)
    return [(label, t, pred) for (label, _, t), pred in zip(points, _loo_predictions(points), strict=True)]
