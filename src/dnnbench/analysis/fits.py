"""Curve fits over small samples (one point per model or per batch size), in plain numpy.

- `linear_fit`: ordinary least squares y = slope * x + intercept.
- `hinge_fit`: memory versus batch size, flat up to a knee and linear after it.
- `upper_bound_line`: the tightest line with every point on or below it (Canziani et al.'s linear
  upper bound of accuracy versus throughput).
- `hyperbolic_fit`: y = a - b / x (accuracy saturating with operations).

Every fit reports ``r2`` = 1 - SSres / SStot, with SSres = sum (y_i - f(x_i))^2 and
SStot = sum (y_i - mean y)^2; when SStot is 0 (every y equal) the fit reproduces y exactly and r2 = 1.0.
Inputs are any sequences of numbers; nothing here reads, prints or keeps state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _arrays(x, y, what: str = "x") -> tuple[np.ndarray, np.ndarray]:
    xa = np.asarray(x, dtype=float).ravel()
    ya = np.asarray(y, dtype=float).ravel()
    if xa.shape != ya.shape:
        raise ValueError(f"{what} and y differ in length: {xa.size} and {ya.size}")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        raise ValueError(f"{what} and y must be finite numbers")
    return xa, ya


def _r2(y: np.ndarray, sse: float) -> float:
    if np.all(y == y[0]):
        return 1.0 if sse <= _tiny(y) else 0.0
    sstot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - sse / sstot


def _tiny(y: np.ndarray) -> float:
    """A sum of squares indistinguishable from 0 for values of this size (rounding noise)."""
    return 1e-20 * y.size * float(np.max(y * y)) if y.size else 0.0


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(intercept, slope, SSE) of least squares y = intercept + slope * x; slope 0 when x is constant."""
    if np.all(y == y[0]):
        return float(y[0]), 0.0, 0.0
    xm, ym = x.mean(), y.mean()
    sxx = float(np.sum((x - xm) ** 2))
    slope = float(np.sum((x - xm) * (y - ym)) / sxx) if sxx > 0 else 0.0
    intercept = float(ym - slope * xm)
    sse = float(np.sum((y - (intercept + slope * x)) ** 2))
    return intercept, slope, sse


# -- linear ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearFit:
    """y = slope * x + intercept, fitted on ``n`` points with coefficient of determination ``r2``."""

    slope: float
    intercept: float
    r2: float
    n: int

    def __call__(self, x):
        return self.slope * x + self.intercept


def linear_fit(x, y) -> LinearFit:
    """Ordinary least squares of y on x: slope = sum (x - mean x)(y - mean y) / sum (x - mean x)^2,
    intercept = mean y - slope * mean x. Raises ValueError for fewer than 2 points or when every x is
    equal (no line is determined)."""
    xa, ya = _arrays(x, y)
    if xa.size < 2:
        raise ValueError(f"a linear fit needs at least 2 points, got {xa.size}")
    if np.all(xa == xa[0]):
        raise ValueError("a linear fit needs at least 2 distinct x values")
    intercept, slope, sse = _ols(xa, ya)
    return LinearFit(slope=slope, intercept=intercept, r2=_r2(ya, sse), n=int(xa.size))


# -- hinge: memory versus batch size ----------------------------------------------------------------


@dataclass(frozen=True)
class HingeFit:
    """Memory model M(b) = base for b <= knee, base + slope * (b - knee) for b > knee; slope >= 0.

    ``knee`` is one of the measured batch sizes; ``knee`` equal to the smallest one means linear from
    the start, equal to the largest one means flat throughout (slope 0)."""

    base: float
    knee: float
    slope: float
    r2: float
    n: int

    def __call__(self, b):
        if np.ndim(b):
            return self.base + self.slope * np.maximum(0.0, np.asarray(b, dtype=float) - self.knee)
        return self.base + self.slope * max(0.0, float(b) - self.knee)


def hinge_fit(batch, mem) -> HingeFit:
    """Fit `HingeFit` to (batch size, memory) points.

    For every distinct measured batch size k as the knee: least squares of mem on x = max(0, b - k),
    giving base (intercept) and slope; a negative slope is replaced by the constant fit (base = mean
    mem, slope = 0). The knee with the smallest sum of squared errors wins; SSEs equal within rounding
    noise are ties, resolved in favour of the larger knee (the simpler, flatter explanation). Needs at
    least 2 points (ValueError otherwise); repeated batch sizes are allowed.
    """
    b, m = _arrays(batch, mem, "batch")
    if b.size < 2:
        raise ValueError(f"a hinge fit needs at least 2 points, got {b.size}")
    tol = _tiny(m)
    best = None  # (sse, knee, base, slope)
    for knee in sorted(set(b.tolist()), reverse=True):  # larger knees first: they keep ties
        x = np.maximum(0.0, b - knee)
        base, slope, sse = _ols(x, m)
        if slope < 0:
            base, slope = float(m.mean()), 0.0
            sse = float(np.sum((m - base) ** 2))
        if best is None or sse < best[0] - tol:
            best = (sse, knee, base, slope)
    sse, knee, base, slope = best
    return HingeFit(base=base, knee=float(knee), slope=slope, r2=_r2(m, sse), n=int(b.size))


# -- the linear upper bound -----------------------------------------------------------------------


@dataclass(frozen=True)
class UpperBound:
    """The line y = slope * x + intercept with every point on or below it; it passes through the
    points at input positions ``support`` = (i, j), i < j."""

    slope: float
    intercept: float
    n: int
    support: tuple[int, int]

    def __call__(self, x):
        return self.slope * x + self.intercept


def upper_bound_line(x, y) -> UpperBound | None:
    """The line with every point on or below it that minimises the sum of vertical gaps
    sum_i (slope * x_i + intercept - y_i).

    Such a line (a linear programme's optimum) passes through two points with distinct x, so every
    line through such a pair is tried (O(n^3), vectorised; fine for the few hundred models at most
    this sees). A point counts as on or below when it is above by no more than 1e-9 of the largest
    |y| (rounding). Ties in the sum (within the same tolerance, times n) go to the first pair (i, j)
    in input order. None when there are fewer than 2 distinct x values.
    """
    xa, ya = _arrays(x, y)
    n = xa.size
    if n < 2 or np.all(xa == xa[0]):
        return None
    i, j = np.triu_indices(n, k=1)
    keep = xa[i] != xa[j]
    i, j = i[keep], j[keep]
    slope = (ya[j] - ya[i]) / (xa[j] - xa[i])
    intercept = ya[i] - slope * xa[i]
    line = slope[:, None] * xa[None, :] + intercept[:, None]  # pairs x points
    tol = 1e-9 * max(1.0, float(np.max(np.abs(ya))))
    feasible = np.all(ya[None, :] <= line + tol, axis=1)
    gaps = np.sum(line - ya[None, :], axis=1)
    gaps = np.where(feasible, gaps, np.inf)
    # The optimum always exists (the upper hull's edge over mean x is feasible); the first pair whose
    # gap is within tolerance of the least wins.
    k = int(np.argmax(gaps <= gaps.min() + tol * n))
    return UpperBound(slope=float(slope[k]), intercept=float(intercept[k]), n=int(n),
                      support=(int(i[k]), int(j[k])))


# -- hyperbolic: accuracy versus operations ----------------------------------------------------------


@dataclass(frozen=True)
class HyperbolicFit:
    """y = a - b / x, fitted on ``n`` points with coefficient of determination ``r2`` (in y)."""

    a: float
    b: float
    r2: float
    n: int

    def __call__(self, x):
        return self.a - self.b / x


def hyperbolic_fit(x, y) -> HyperbolicFit:
    """Least squares of y on u = 1 / x: y = a + c * u, so a is the intercept and b = -c. Every x must be
    > 0 and at least 2 of them distinct (ValueError otherwise)."""
    xa, ya = _arrays(x, y)
    if np.any(xa <= 0):
        raise ValueError("a hyperbolic fit needs every x above 0")
    line = linear_fit(1.0 / xa, ya)
    return HyperbolicFit(a=line.intercept, b=-line.slope, r2=line.r2, n=line.n)
