"""Predicting a model's latency on a measured setup from what it is made of (pure: numpy, no I/O).

A *point* is one model at one batch size: its features (`measure.kernels.FEATURES`, ``macs``, and
``kernel_s``: the sum of its kernels' times on this machine, see `kernel_seconds`) and, for a measured
model, its measured latency of one batch. A *method* is a set of feature columns; `calibrate` fits
latency = sum of coefficient x column (an intercept is a column of ones) on the measured points of one
setup and batch size:

- ``ops``: intercept + MACs, ordinary least squares: the line of Canziani et al., the baseline;
- ``features``: intercept + MACs by kernel kind + activations + kernel calls;
- ``kernels``: kernel_s + kernel calls + intercept: the kernels timed on this machine, summed, with
  what running them as a model adds (a dispatch cost per call, a cost per pass);
- ``inside``: the same, each kernel's time alone first corrected to its time inside a model: the
  calibration models run for real with each kernel timed where it runs (`measure.kernels.KernelClock`),
  and the ratio inside / alone fitted by operator, kind and size (`in_model_fits`). A kernel timed
  alone runs on warm caches with its threads awake; inside a model it follows another layer.

Except for the baseline, coefficients are non-negative (no cost is negative) and fitted to relative
errors (a 1 ms model matters as much as a 1 s one): min sum ((predicted - measured) / measured)^2, by
least squares on every subset of columns, keeping the best non-negative one (at most 7 columns, so
at most 127 small solves).

Every prediction carries an interval from the leave-one-out errors e = (predicted - measured) /
measured of the calibration: measured = predicted / (1 + e), so [p / (1 + max e), p / (1 + min e)]
covers a new model's measured latency with probability (n - 1) / (n + 1) when it is like the
calibration models (exchangeable), and says when it is not: features outside the calibrated range.
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass, field

import numpy as np

from . import AUTO_METHODS

METHODS: dict[str, tuple[str, ...]] = {
    "ops": ("one", "macs"),
    "features": ("one", "macs_dense_conv", "macs_grouped_conv", "macs_matmul", "macs_attention", "activations",
                 "kernels"),
    "kernels": ("one", "kernel_s", "kernels"),
    "inside": ("one", "kernel_s", "kernels"),
    "runtime": ("one", "kernel_s", "kernels"),
}
# the methods that sum kernels timed on this machine; ``inside`` corrects each to its time inside a model;
# ``runtime`` sums the kernels the setup's runtime runs, timed in it (`backends.runtime_kernels`)
TIMED_METHODS = ("kernels", "inside", "runtime")
# ``auto``: of these, the one whose leave-one-out error on the calibration is smallest. A runtime that
# fuses what eager runs apart (ONNX Runtime, OpenVINO) is poorly summed by eager kernels, and its own
# calibration says so (benchmarks/predict_accuracy.py: onnxruntime fp32 at batch 1, kernels ±41% and
# features ±18% leave-one-out, ±42% and ±15% on 24 new models)
AUTO = "auto"
AUTO_WITHIN = 0.10  # auto chooses the method whose leave-one-out predictions are most often this close
AUTO_NEAR = 0.20  # (each counting twice) or this close (once)
# and ranks last a method whose leave-one-out missed a model by more than this (see `Calibration.rank`)
AUTO_BLUNDER = 0.50
DEFAULT_METHOD = "kernels"
MIN_POINTS = 4  # below this, leave-one-out leaves too few to fit three columns
# a feature more than this factor outside the calibrated range is an extrapolation
EXTRAPOLATION_FACTOR = 2.0
# a kind of kernel making up this share of a model's MACs more than any calibrated model's
UNSEEN_KIND_MARGIN = 0.25
_KIND_SHARES = ("macs_grouped_conv", "macs_matmul", "macs_attention")
# a prediction whose kernel time is timed less than this is said to rest on estimated kernels: the
# calibration's interval covers timed sums only (estimates missed by a median ±15 to 27% in
# benchmarks/predict_accuracy.py)
ESTIMATED_SHARE = 0.9


@dataclass(frozen=True)
class Point:
    label: str
    features: dict
    latency_s: float | None = None


def _row(features: dict, columns) -> list[float]:
    return [1.0 if c == "one" else float(features.get(c) or 0.0) for c in columns]


def _solve(x: np.ndarray, y: np.ndarray, relative: bool) -> np.ndarray:
    """Least squares of y on the columns of x (relative: rows divided by y), non-negative when
    ``relative``: the best of the solves on every subset of columns whose coefficients are all >= 0."""
    if not relative:
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        return coef
    xs, ys = x / y[:, None], np.ones_like(y)
    scale = np.abs(xs).max(axis=0)
    scale[scale == 0] = 1.0
    xs = xs / scale
    best, best_sse = np.zeros(x.shape[1]), float(np.sum(ys ** 2))
    k = x.shape[1]
    for size in range(1, k + 1):
        for subset in itertools.combinations(range(k), size):
            sub = list(subset)
            coef, *_ = np.linalg.lstsq(xs[:, sub], ys, rcond=None)
            if np.any(coef < 0):
                continue
            sse = float(np.sum((xs[:, sub] @ coef - ys) ** 2))
            if sse < best_sse - 1e-15:
                best = np.zeros(k)
                best[sub] = coef
                best_sse = sse
    return best / scale


@dataclass(frozen=True)
class Calibration:
    """``method``'s fit on ``labels`` (n measured points of one setup and batch size): coefficients by
    column, leave-one-out relative errors by label, and each feature's calibrated range."""

    method: str
    columns: tuple[str, ...]
    coefficients: tuple[float, ...]
    loo_errors: dict[str, float]
    ranges: dict[str, tuple[float, float]]
    kind_shares: dict[str, float] = field(default_factory=dict)  # the largest share of each kind calibrated

    @property
    def n(self) -> int:
        return len(self.loo_errors)

    def __call__(self, features: dict) -> float:
        return float(np.dot(_row(features, self.columns), self.coefficients))

    @property
    def coverage(self) -> float:
        """How often the interval covers a new like model's latency: (n - 1) / (n + 1)."""
        return (self.n - 1) / (self.n + 1)

    @property
    def median_abs_error(self) -> float:
        return float(statistics.median(abs(e) for e in self.loo_errors.values()))

    @property
    def rank(self) -> tuple[bool, float, float]:
        """How AUTO ranks calibrations, smaller first: one whose leave-one-out missed no model by more
        than AUTO_BLUNDER before one that did; then the most leave-one-out predictions within
        ±AUTO_WITHIN (the goal a method is chosen for) counted twice and within ±AUTO_NEAR once; then
        the smaller median error. With a dozen calibration models the share within ±10% alone moves
        by one model. Over 46 benchmarked setups, batch sizes and timings the shares chose as well as
        the share within ±10% alone, or it and then the share within ±20%, and better in 4 and 1 of
        them. A fit of many columns (features: 7) can put most of a dozen models close and one far off:
        it has learnt those models, not the law, and it went on to miss new models by far. On
        onnxruntime fp32 at batch 16, features put 9 of 12 within ±10% (one missed by 132%) and runtime
        6, none beyond ±19%; on the 24 targets both put 58% within ±10%, features 75% within ±20%
        (worst ±71%), runtime 96% (worst ±26%). On openvino fp32 at batch 16, features 8 (one missed
        by 89%), runtime 7; on the targets, in that timing, 54% and 75% within ±10%. On ten eager and onnxruntime
        timings at batch 1 and 16 (benchmarks/predict_accuracy.py) no other choice changed."""
        errors = list(self.loo_errors.values())
        near = sum((abs(e) <= AUTO_WITHIN) + (abs(e) <= AUTO_NEAR) for e in errors) / len(errors)
        return any(abs(e) > AUTO_BLUNDER for e in errors), -near, self.median_abs_error

    def interval(self, predicted: float) -> tuple[float, float]:
        low_e, high_e = min(self.loo_errors.values()), max(self.loo_errors.values())
        low = predicted / (1 + high_e) if 1 + high_e > 0 else 0.0
        high = predicted / (1 + low_e) if 1 + low_e > 0 else math.inf
        return low, high

    def extrapolations(self, features: dict) -> list[str]:
        """Why ``features`` lie outside what this calibration saw, in words; empty when they do not."""
        out = []
        for column, coefficient in zip(self.columns, self.coefficients, strict=True):
            if column == "one" or coefficient == 0 or column not in self.ranges:
                continue
            value, (low, high) = float(features.get(column) or 0.0), self.ranges[column]
            if value < low / EXTRAPOLATION_FACTOR or value > high * EXTRAPOLATION_FACTOR:
                out.append(f"its {column} ({value:.3g}) is outside the calibrated {low:.3g} to {high:.3g}")
        total = float(features.get("macs") or 0.0)
        for kind in _KIND_SHARES:
            share = float(features.get(kind) or 0.0) / total if total else 0.0
            if share > self.kind_shares.get(kind, 0.0) + UNSEEN_KIND_MARGIN:
                out.append(f"{share:.0%} of its MACs are {kind.removeprefix('macs_').replace('_', ' ')}, more than "
                           f"in any calibrated model ({self.kind_shares.get(kind, 0.0):.0%})")
        return out


def _fit(points: list[Point], method: str) -> np.ndarray:
    columns = METHODS[method]
    x = np.array([_row(p.features, columns) for p in points], dtype=float)
    y = np.array([p.latency_s for p in points], dtype=float)
    return _solve(x, y, relative=method != "ops")


def calibrate(points: list[Point], method: str = DEFAULT_METHOD) -> Calibration:
    """Fit ``method`` on the measured ``points`` (distinct labels, latency above 0; at least MIN_POINTS),
    with its leave-one-out errors. ValueError otherwise."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    points = [p for p in points if p.latency_s is not None]
    if len(points) < MIN_POINTS:
        raise ValueError(f"a calibration needs at least {MIN_POINTS} measured models, got {len(points)}")
    labels = [p.label for p in points]
    if len(set(labels)) != len(labels):
        raise ValueError("a calibration needs distinct model labels")
    if any(not p.latency_s > 0 for p in points):
        raise ValueError("every measured latency must be above 0")
    columns = METHODS[method]
    coefficients = _fit(points, method)
    loo = {}
    for k, p in enumerate(points):
        rest = points[:k] + points[k + 1:]
        predicted = float(np.dot(_row(p.features, columns), _fit(rest, method)))
        loo[p.label] = (predicted - p.latency_s) / p.latency_s
    ranges = {c: (min(float(p.features.get(c) or 0.0) for p in points),
                  max(float(p.features.get(c) or 0.0) for p in points)) for c in columns if c != "one"}
    shares = {kind: max((float(p.features.get(kind) or 0.0) / float(p.features["macs"])
                         if p.features.get("macs") else 0.0) for p in points) for kind in _KIND_SHARES}
    return Calibration(method, columns, tuple(float(c) for c in coefficients), loo, ranges, shares)


# -- summing kernels --------------------------------------------------------------------------------


@dataclass(frozen=True)
class KindFit:
    """log(seconds) = a + b log(bytes) + c log(1 + MACs), fitted on the timed kernels of one operator
    (or, with too few of them, of one kind); the estimate of a kernel that was not timed."""

    coefficients: tuple[float, float, float]
    n: int

    def __call__(self, bytes_: float, macs: float) -> float:
        a, b, c = self.coefficients
        return math.exp(min(a + b * math.log(max(bytes_, 1.0)) + c * math.log1p(max(macs, 0.0)), _LOG_HOUR))


MIN_KIND_POINTS = 4
# a fit whose power of bytes or MACs lies outside these is not a law of kernel time but of its few
# points: bytes and MACs that grow together (the batched products of one attention model) give powers
# of +-500,000 that cancel on them and explode elsewhere. Its group is left to a wider one.
POWER_BOUNDS = (-1.0, 3.0)
_LOG_HOUR = math.log(3600.0)  # no estimate beyond an hour a kernel, whatever the fit


def _groups(spec, by_op: bool = True) -> tuple[str, ...]:
    """The groups a kernel's fit is taken from, most specific first: its operator and kind, its operator
    (``by_op``), its kind, all kernels."""
    return (f"op:{spec.op}:{spec.kind}", *((f"op:{spec.op}",) if by_op else ()), f"kind:{spec.kind}", "all")


def _fit_of(fits: dict, spec, by_op: bool = True):
    """The most specific fit made for ``spec``'s groups; None where none was."""
    return next((fits[g] for g in _groups(spec, by_op) if g in fits), None)


def kernel_fits(timed: dict[str, float], specs: dict) -> dict[str, KindFit]:
    """Fits of kernel time from its bytes and MACs, by operator and kind (``op:NAME:KIND``: a depthwise
    convolution is not a dense one), by operator (``op:NAME``), by kind (``kind:KIND``) and over all
    kernels (``all``), from ``timed`` {key: seconds} and ``specs`` {key: KernelSpec}, for the
    groups with at least MIN_KIND_POINTS timed kernels whose powers lie within POWER_BOUNDS."""
    groups: dict[str, list] = {}
    for key, seconds in timed.items():
        spec = specs.get(key)
        if spec is None or not seconds or seconds <= 0:
            continue
        for group in _groups(spec):
            groups.setdefault(group, []).append((spec.bytes, spec.macs, seconds))
    fits = {}
    for group, rows in groups.items():
        if len(rows) < MIN_KIND_POINTS:
            continue
        x = np.array([[1.0, math.log(max(b, 1.0)), math.log1p(max(m, 0.0))] for b, m, _ in rows])
        y = np.log([s for _, _, s in rows])
        if not np.any(x[:, 2]):
            x = x[:, :2]
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        coef = tuple(float(c) for c in coef) + (0.0,) * (3 - len(coef))
        if all(POWER_BOUNDS[0] <= power <= POWER_BOUNDS[1] for power in coef[1:]):
            fits[group] = KindFit(coef, len(rows))
    return fits


def kernel_seconds(calls: dict[str, int], specs: dict, timed: dict[str, float],
                   fits: dict[str, KindFit], by_kind: dict | None = None) -> tuple[float, float]:
    """(the sum of a profile's kernel times, the share of it that was timed rather than estimated):
    each kernel's timed seconds, or the fit of its operator and kind, else of its operator, else of its
    kind, else of all kernels.
    ``by_kind``, where given, receives the sum of each kind."""
    total = timed_total = 0.0
    for key, n in calls.items():
        spec, seconds = specs[key], timed.get(key)
        if seconds is not None and seconds > 0:
            timed_total += n * seconds
        else:
            fit = _fit_of(fits, spec)
            if fit is None:
                raise ValueError("no kernel was timed on this setup, so no untimed kernel can be estimated")
            seconds = fit(spec.bytes, spec.macs)
        total += n * seconds
        if by_kind is not None:
            by_kind[spec.kind] = by_kind.get(spec.kind, 0.0) + n * seconds
    return total, (timed_total / total if total else 1.0)


# -- from kernels timed alone to kernels inside a model ---------------------------------------------

# a correction beyond these factors is a fit gone astray, not what a layer before a kernel does to it
RATIO_BOUNDS = (1 / 8, 8.0)


@dataclass(frozen=True)
class InModelFit:
    """log(seconds inside a model / seconds alone) = a + b log(seconds alone), fitted on the kernels of
    one operator and kind (else kind, else all) of the calibration models, each weighted by its time in
    their passes: how far timing a kernel alone misleads, by the kernel's size (a short kernel pays
    more, relatively, for the thread wake-up and the caches the layer before left it)."""

    coefficients: tuple[float, float]
    n: int

    def __call__(self, seconds_alone: float) -> float:
        a, b = self.coefficients
        ratio = math.exp(a + b * math.log(max(seconds_alone, 1e-9)))
        return min(max(ratio, RATIO_BOUNDS[0]), RATIO_BOUNDS[1])


def in_model_fits(alone: dict[str, float], runs: list[tuple[dict, dict]], specs: dict) -> dict[str, InModelFit]:
    """Fits of the ratio of a kernel's time inside a model to its time alone, by operator and kind, by
    kind and over all (the groups with at least MIN_KIND_POINTS kernels timed both ways), from ``alone``
    {key: seconds of one call} and ``runs``: [(calls {key: calls per pass}, seconds {key: seconds of one
    call inside the model})], one per calibration model; a kernel in several models counts with its
    median time inside them, weighted by its seconds in all of their passes."""
    inside: dict[str, list] = {}
    weights: dict[str, float] = {}
    for calls, seconds in runs:
        for key, s in seconds.items():
            inside.setdefault(key, []).append(s)
            weights[key] = weights.get(key, 0.0) + s * calls.get(key, 1)
    groups: dict[str, list] = {}
    for key, found in inside.items():
        spec, single, seconds = specs.get(key), alone.get(key), statistics.median(found)
        if spec is None or not single or single <= 0 or seconds <= 0:
            continue
        for group in _groups(spec, by_op=False):
            groups.setdefault(group, []).append((math.log(single), math.log(seconds / single), weights[key]))
    fits = {}
    for group, rows in groups.items():
        if len(rows) < MIN_KIND_POINTS:
            continue
        w = np.sqrt(np.array([max(r[2], 1e-12) for r in rows]))
        x = np.array([[1.0, r[0]] for r in rows]) * w[:, None]
        y = np.array([r[1] for r in rows]) * w
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        fits[group] = InModelFit((float(coef[0]), float(coef[1])), len(rows))
    return fits


def inside_models(timed: dict[str, float], specs: dict, fits: dict[str, InModelFit]) -> dict[str, float]:
    """``timed`` {key: seconds alone} as each kernel's estimated seconds inside a model: times the fit of
    its operator and kind, else kind, else all (unchanged where none was made)."""
    out = {}
    for key, seconds in timed.items():
        fit = _fit_of(fits, specs[key], by_op=False) if key in specs else None
        out[key] = seconds * fit(seconds) if fit else seconds
    return out


# -- predictions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Predicted:
    """A predicted latency of one batch (seconds), its interval, and why it may not hold."""

    latency_s: float
    low_s: float
    high_s: float
    extrapolations: list

    @property
    def extrapolates(self) -> bool:
        return bool(self.extrapolations)


def predict_point(calibration: Calibration, features: dict) -> Predicted:
    predicted = calibration(features)
    low, high = calibration.interval(predicted)
    return Predicted(predicted, low, high, calibration.extrapolations(features))


def summary(errors: list[float]) -> dict:
    """Share within ±10% and ±20%, median and worst absolute relative error of ``errors``."""
    absolute = [abs(e) for e in errors]
    return {"n": len(errors), "within_10": sum(a <= 0.10 for a in absolute) / len(errors),
            "within_20": sum(a <= 0.20 for a in absolute) / len(errors),
            "median_abs": float(statistics.median(absolute)), "max_abs": max(absolute)}


def spearman(x, y) -> float:
    """Spearman's rank correlation of two equally long sequences (average ranks for ties)."""
    def ranks(v):
        v = np.asarray(v, dtype=float)
        order = v.argsort()
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        for value in np.unique(v):  # ties share their mean rank
            tied = v == value
            r[tied] = r[tied].mean()
        return r
    rx, ry = ranks(x), ranks(y)
    return float(np.corrcoef(rx, ry)[0, 1])


# -- from measurements and profiles to predictions --------------------------------------------------


def features(profile: dict, timed: dict[str, float] | None = None, fits: dict | None = None,
             kernels_of=None) -> dict:
    """A model's features from its profile (`measure.kernels.Profile.to_dict`): those of FEATURES, ``macs``
    (their sum), and with ``timed`` kernel seconds, ``kernel_s`` and ``timed_share`` (see `kernel_seconds`),
    over the kernels ``kernels_of(profile)`` gives ((calls, specs) by key) where given: a runtime's, its
    layers with their epilogues, the rest fused away."""
    from ..measure.profile import Profile

    found = Profile.from_dict(profile)
    out = found.features()
    out["macs"] = sum(v for k, v in out.items() if k.startswith("macs_"))
    if timed is not None:
        kinds: dict = {}
        calls, specs = (found.calls, found.specs) if kernels_of is None else kernels_of(profile)
        out["kernel_s"], out["timed_share"] = kernel_seconds(calls, specs, timed, fits or {}, kinds)
        out.update({f"kernel_s_{kind}": seconds for kind, seconds in kinds.items()})
        out["calls_other"] = sum(n for k, n in found.calls.items() if found.specs[k].kind == "other")
    return out


def specs_of(profiles, kernels_of=None) -> dict:
    """Every kernel spec of ``profiles`` (profile dicts), by key; with ``kernels_of``, of the kernels it
    gives (see `features`)."""
    from ..measure.profile import Profile

    out = {}
    for p in profiles:
        out.update(Profile.from_dict(p).specs if kernels_of is None else kernels_of(p)[1])
    return out


def choose_setup(models: list, batch: int):
    """(the setup with the most models measured successfully at ``batch``, those models); ties: the first
    in sorted order. (None, []) when none was."""
    counts: dict = {}
    for m in models:
        if batch in m.ok and m.ok[batch].get("latency_median_s"):
            counts.setdefault(m.setup, []).append(m)
    if not counts:
        return None, []
    best = max(sorted(counts, key=lambda s: tuple(map(str, s.key()))), key=lambda s: len(counts[s]))
    return best, counts[best]


def _label(name: str, size: int, names: list[str]) -> str:
    return name if names.count(name) <= 1 else f"{name}@{size}"


# ``inside`` and ``runtime`` sum other kernel times than kernels: their points are made apart (`predict_models`)
_AUTO_ON_POINTS = tuple(m for m in AUTO_METHODS if m not in ("inside", "runtime"))


def _auto_candidates(timed: bool) -> list[str]:
    """The methods AUTO calibrates on one set of points: those summing kernels only where they were ``timed``."""
    return [m for m in _AUTO_ON_POINTS if timed or m not in TIMED_METHODS]


def best_calibration(points: list[Point], method: str, timed: bool) -> Calibration:
    """``method`` calibrated on ``points``; for AUTO, of AUTO_METHODS but inside (kernels only where
    kernels were ``timed``) the one of the best `Calibration.rank` (the first of them on a tie).
    ValueError when none can be calibrated."""
    if method != AUTO:
        return calibrate(points, method)
    found, problem = [], None
    for candidate in _auto_candidates(timed):
        try:
            found.append(calibrate(points, candidate))
        except ValueError as exc:
            problem = exc
    if not found:
        raise problem or ValueError("no method could be calibrated")
    return min(found, key=lambda c: c.rank)


def _calibration_points(calibrating: list, profiles: dict, timed: dict | None, fits, batch: int,
                        names: list[str], kernels_of=None) -> tuple[list[Point], dict]:
    """The calibration's points (features with ``timed`` summed), and {(name, input size): (label, latency, cell)}."""
    points, measured = [], {}
    for m in calibrating:
        profile = profiles.get((m.model, m.input_size, batch))
        if profile is None:
            continue
        label = _label(m.model, m.input_size, names)
        latency = float(m.ok[batch]["latency_median_s"])
        points.append(Point(label, features(profile, timed, fits, kernels_of), latency))
        measured[(m.model, m.input_size)] = (label, latency, m.ok[batch])
    return points, measured


def _best_source(sources: list, profiles: list, points_of) -> tuple:
    """Of ``sources`` [(method, kernel seconds by key or None, ``kernels_of`` or None)], the one whose
    calibration ranks best (`Calibration.rank`): (calibration, seconds, their fits (on the kernels of
    ``profiles``), kernels_of, points, what ``points_of(seconds, fits, kernels_of)`` gave beside its
    points). A source that cannot be calibrated is passed over; ValueError (the last one's) when none can."""
    best, problem = None, None
    for asked, times, kernels_of in sources:
        fits = kernel_fits(times, specs_of(profiles, kernels_of)) if times is not None else None
        try:
            points, extra = points_of(times, fits, kernels_of)
            calibration = best_calibration(points, asked, times is not None)
        except ValueError as exc:
            problem = exc
            continue
        if best is None or calibration.rank < best[0].rank:
            best = (calibration, times, fits, kernels_of, points, extra)
    if best is None:
        raise problem
    return best


def predict_models(calibrating: list, profiles: dict, failed: dict, timed: dict | None, batch: int, method: str,
                   targets: list[tuple[str, int]], inside: dict | None = None, runtime: dict | None = None,
                   kernels_of=None) -> dict:
    """Calibrate ``method`` on the ``calibrating`` models (`data.Measured`, one setup, measured at ``batch``)
    and predict ``targets`` [(name, input size)]: {"calibration": `Calibration`, "points": the calibration's
    `Point`s, "rows": one dict per target, "weighed": the methods it chose from (one that could not be calibrated is passed over, and still named)}. ``profiles``
    {(name, input size, batch): profile dict};
    ``failed``: the same keys to the error that kept a profile from being recorded; ``timed``: kernel
    seconds alone by key; ``inside``: the same corrected to their times inside a model (`inside_models`),
    which the inside method sums; ``runtime``: the seconds of the kernels the setup's runtime runs as
    one (those ``kernels_of(profile)`` gives, see `features`), timed in it, which the runtime method
    sums. AUTO weighs those given against the others; one of them that cannot be calibrated is passed over. A target that was measured is
    predicted without itself (its leave-one-out prediction). ValueError when no calibration can be made."""
    names = [m.model for m in calibrating]
    lost = [(m.model, failed[k]) for m in calibrating if (k := (m.model, m.input_size, batch)) in failed]
    apart = {"inside": (inside, None), "runtime": (runtime, kernels_of)}
    if method in apart:
        sources = [(method, *apart[method])]
    else:
        sources = [(method, timed, None)] + [(m, times, of) for m, (times, of) in apart.items()
                                             if method == AUTO and times is not None]

    def points_of(times, fits, of):
        points, measured = _calibration_points(calibrating, profiles, times, fits, batch, names, of)
        if lost and len(points) < MIN_POINTS:
            raise ValueError(f"{len(lost)} of the {len(calibrating)} measured models could not be profiled "
                             f"({lost[0][0]}: {lost[0][1]})")
        return points, measured

    calibration, timed, fits, kernels_of, points, measured = _best_source(sources, list(profiles.values()), points_of)
    method = calibration.method
    weighed = [m for asked, times, _ in sources
               for m in (_auto_candidates(times is not None) if asked == AUTO else [asked])]
    rows = []
    for name, size in targets:
        key = (name, size, batch)
        row = {"model": name, "input_size": size, "batch_size": batch, "method": method}
        if key not in profiles:
            rows.append({**row, "problem": failed.get(key, "no profile")})
            continue
        found = features(profiles[key], timed, fits, kernels_of)
        if (name, size) in measured:
            label, latency, cell = measured[(name, size)]
            value = latency * (1 + calibration.loo_errors[label])
            low, high = calibration.interval(value)
            row.update(measured_latency_s=latency, error=calibration.loo_errors[label],
                       disturbed=bool(cell.get("disturbed")))
            extrapolations = []
        else:
            p = predict_point(calibration, found)
            value, low, high, extrapolations = p.latency_s, p.low_s, p.high_s, list(p.extrapolations)
            share = found.get("timed_share")
            if share is not None and share < ESTIMATED_SHARE:
                extrapolations.append(f"{1 - share:.0%} of its kernel time is estimated from other kernels, not "
                                      "timed: coarser than the interval says")
        rows.append({**row, "latency_s": value, "low_s": low, "high_s": high, "time_per_image_s": value / batch,
                     "macs": found["macs"] / batch, "timed_share": found.get("timed_share"),
                     "extrapolations": extrapolations})
    return {"calibration": calibration, "points": points, "rows": rows,
            "weighed": [m for m in AUTO_METHODS if m in weighed]}


def for_report(models: list, profiles: dict, timed: dict, batch: int, runtime: dict | None = None,
               kernels_of=None) -> dict | None:
    """The predictions a report shows for ``models`` (one setup) at ``batch``: where every measured model
    has a profile, the method of AUTO_METHODS (kernels where kernels were timed on the setup; runtime
    where ``runtime``, the setup's runtime kernels (those ``kernels_of`` gives, see `features`), were) ranked best
    (`Calibration.rank`), else ``ops`` from the stored operation counts; its leave-one-out prediction of
    every measured model, and a prediction of every other profiled model.
    {"method", "calibration", "measured": [(Measured, cell, predicted latency)], "predicted": [(name, input
    size, `Predicted`, features)]}; None when fewer than MIN_POINTS models can calibrate."""
    _, calibrating = choose_setup(models, batch)
    have = [m for m in calibrating if (m.model, m.input_size, batch) in profiles]
    profiled = len(have) == len(calibrating)
    names = [m.model for m in calibrating]
    sources = [(AUTO if profiled else "ops", timed if profiled and timed else None, None)]
    if profiled and runtime:
        sources.append(("runtime", runtime, kernels_of))

    def points_of(times, fits, of):
        points, cells = [], []
        for m in calibrating:
            if not profiled:
                if not m.macs:
                    continue
                found = {"macs": float(m.macs) * batch}
            else:
                found = features(profiles[(m.model, m.input_size, batch)], times, fits, of)
            points.append(Point(_label(m.model, m.input_size, names), found, float(m.ok[batch]["latency_median_s"])))
            cells.append((m, m.ok[batch]))
        return points, cells

    try:
        calibration, times, fits, kernels_of, points, cells = _best_source(sources, list(profiles.values()), points_of)
    except ValueError:
        return None
    method = calibration.method
    measured = [(m, cell, p.latency_s * (1 + calibration.loo_errors[p.label]))
                for (m, cell), p in zip(cells, points, strict=True)]
    predicted = []
    if profiled:
        done = {(m.model, m.input_size) for m in models}
        for (name, size, b), profile in sorted(profiles.items()):
            if b != batch or (name, size) in done:
                continue
            try:
                found = features(profile, times, fits, kernels_of)
            except ValueError:  # a kernel no timed one can estimate
                continue
            found["params"] = profile.get("weights_bytes", 0) / 4
            predicted.append((name, size, predict_point(calibration, found), found))
    return {"method": method, "calibration": calibration, "measured": measured, "predicted": predicted}
