"""`dnnbench recommend`: which measured models meet the user's limits, most accurate first.

Definitions used throughout:

- latency: the median wall time of one batch of ``batch_size`` images (``latency_median_s``), seconds.
- images per second: as measured (``images_per_s``); for an interpolated batch size, batch / latency.
- memory: the cell's ``mem_nvml_bytes`` (device memory seen by the driver) when recorded, else its
  ``mem_peak_bytes`` (peak resident memory); bytes. Printed in binary units (1 MiB = 2^20 bytes,
  1 GiB = 2^30 bytes), as every memory figure of dnnbench; a limit typed in decimal units (``1GB``)
  is shown converted.
- energy: joules per image (``energy_per_image_j``).
- top-1: percent; the accuracy `dnnbench eval` measured in the model's backend and precision where
  there is one, else the published ImageNet top-1 of its fp32 weights for an fp32 setup, and none for
  a bf16, fp16 or int8 setup (no publication gives a quantized model's accuracy).

A batch size that was not measured is interpolated linearly between the nearest successfully measured
batch sizes below and above it; it is never extrapolated beyond them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UserError
from ..text import short_name
from ..units import format_significant
from .data import Measured, wrong_results

# -- the limits --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """What the user can afford, at the batch size they will run.

    ``max_memory`` bytes; exactly one of ``max_latency`` (seconds per batch) and ``min_fps`` (images
    per second); optional ``min_top1`` (percent) and ``max_energy`` (joules per image). Invalid limits
    raise `UserError` with a one-line message naming the fix."""

    max_memory: int
    max_latency: float | None = None
    min_fps: float | None = None
    batch_size: int = 1
    min_top1: float | None = None
    max_energy: float | None = None

    def __post_init__(self):
        if self.max_latency is None and self.min_fps is None:
            raise UserError("give a speed limit: --max-latency TIME (e.g. 50ms) or --min-fps N (images per second)")
        if self.max_latency is not None and self.min_fps is not None:
            raise UserError("give one speed limit, not both: --max-latency TIME or --min-fps N")
        checks = [("max_memory", self.max_memory, "--max-memory, e.g. 2GB"),
                  ("max_latency", self.max_latency, "--max-latency, e.g. 50ms"),
                  ("min_fps", self.min_fps, "--min-fps, e.g. 30"),
                  ("min_top1", self.min_top1, "--min-top1, e.g. 75"),
                  ("max_energy", self.max_energy, "--max-energy, e.g. 0.5")]
        for name, value, example in checks:
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
                    or value == float("inf"):
                raise UserError(f"{name} must be a number above zero, got {value!r}: give {example}")
        if self.min_top1 is not None and self.min_top1 > 100:
            raise UserError(f"min_top1 is a percentage, got {self.min_top1!r}: give --min-top1 between 0 and 100")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise UserError(f"batch_size must be a whole number of at least 1, got {self.batch_size!r}: "
                            "give --batch-size, e.g. 1")


# -- a model's figures at one batch size --------------------------------------------------------------


@dataclass(frozen=True)
class At:
    """A model's figures at one batch size: measured (``interpolated`` False, ``between`` None) or
    interpolated between the measured batch sizes ``between`` = (below, above)."""

    latency_s: float
    images_per_s: float
    memory_bytes: float | None
    energy_per_image_j: float | None
    interpolated: bool = False
    between: tuple[int, int] | None = None
    disturbed: bool = False  # a cell it comes from was measured while other processes used the machine
    cell: dict | None = field(default=None, compare=False, repr=False)  # the measured cell (None: interpolated)


def _memory(cell: dict) -> float | None:
    from ..setup import memory_bytes

    return memory_bytes(cell)


def _lerp(lo: float | None, hi: float | None, t: float) -> float | None:
    if lo is None or hi is None:
        return None
    return lo + t * (hi - lo)


def figures_at(m: Measured, batch: int) -> At | None:
    """``m``'s figures at batch size ``batch``.

    - measured successfully at ``batch``: that cell's latency_median_s, images_per_s (batch / latency
      if missing), memory (see the module's definition) and energy_per_image_j;
    - otherwise, with lo the largest measured batch size below ``batch`` and hi the smallest above, when
      both were measured successfully: t = (batch - lo) / (hi - lo), latency, memory and energy per
      image are each v_lo + t * (v_hi - v_lo) (None when either side lacks it), images_per_s =
      batch / latency, interpolated = True, between = (lo, hi);
    - otherwise None: no extrapolation beyond the measured batch sizes, and no interpolation across a
      failed cell (the cell at ``batch`` itself, lo or hi with status oom, crashed, ...): a failed
      measurement is not papered over.
    """
    cell = m.cells.get(batch)
    if cell is not None and cell.get("status") != "ok":
        return None
    ok = m.ok
    if batch in ok:
        latency = ok[batch].get("latency_median_s")
        if latency is None:
            return None
        fps = ok[batch].get("images_per_s")
        return At(latency_s=latency, images_per_s=fps if fps is not None else batch / latency,
                  memory_bytes=_memory(ok[batch]), energy_per_image_j=ok[batch].get("energy_per_image_j"),
                  disturbed=bool(ok[batch].get("disturbed")), cell=ok[batch])
    below = [b for b in m.cells if b < batch]
    above = [b for b in m.cells if b > batch]
    if not below or not above:
        return None
    lo, hi = max(below), min(above)
    if lo not in ok or hi not in ok or ok[lo].get("latency_median_s") is None \
            or ok[hi].get("latency_median_s") is None:
        return None
    t = (batch - lo) / (hi - lo)
    latency = _lerp(ok[lo]["latency_median_s"], ok[hi]["latency_median_s"], t)
    return At(latency_s=latency, images_per_s=batch / latency,
              memory_bytes=_lerp(_memory(ok[lo]), _memory(ok[hi]), t),
              energy_per_image_j=_lerp(ok[lo].get("energy_per_image_j"), ok[hi].get("energy_per_image_j"), t),
              interpolated=True, between=(lo, hi),
              disturbed=bool(ok[lo].get("disturbed") or ok[hi].get("disturbed")))


# -- formatting a comparison -------------------------------------------------------------------------


def _pair(value: float, limit: float, fmt, digits: int) -> tuple[str, str]:
    """Both numbers formatted alike, with more digits until they no longer print the same."""
    for d in range(digits, digits + 6):
        a, b = fmt(value, d), fmt(limit, d)
        if a != b:
            return a, b
    return a, b


def _byte_unit(limit: float) -> tuple[str, float, int]:
    for unit, scale, digits in (("GiB", 2**30, 2), ("MiB", 2**20, 0), ("KiB", 2**10, 0)):
        if limit >= scale:
            return unit, scale, digits
    return "B", 1.0, 0


def format_mib(value: float | None) -> str:
    """Bytes in mebibytes (2^20), ``-`` for None."""
    return "-" if value is None else f"{value / 2**20:,.0f}"


def _memory_phrase(value: float, limit: float) -> str:
    unit, scale, digits = _byte_unit(limit)
    a, b = _pair(value, limit, lambda v, d: f"{v / scale:,.{d}f} {unit}", digits)
    return f"memory {a} > {b}"


def _latency_phrase(value: float, limit: float) -> str:
    unit, scale = ("s", 1.0) if limit >= 1 else ("ms", 1e-3)
    a, b = _pair(value, limit, lambda v, d: f"{v / scale:.{d}f} {unit}", 1 if unit == "ms" else 2)
    return f"latency {a} > {b}"


def _fps_phrase(value: float, limit: float) -> str:
    a, _ = _pair(value, limit, lambda v, d: f"{v:.{d}f}", 1)
    return f"{a} images/s < {format_significant(limit)} images/s"


def _top1_phrase(value: float, limit: float) -> str:
    a, b = _pair(value, limit, lambda v, d: f"{v:.{d}f}%", 1)
    return f"top-1 {a} < {b}"


def _energy_phrase(value: float, limit: float) -> str:
    a, b = _pair(value, limit, lambda v, d: f"{format_significant(v, d)} J/image", 3)
    return f"energy {a} > {b}"


def _sizes(batches) -> str:
    return ", ".join(str(b) for b in sorted(batches)) or "none"


def describe_limits(limits: Limits) -> str:
    """The limits as one line, e.g. ``batch size 1: memory <= 0.93 GiB, latency <= 50.0 ms``."""
    unit, scale, digits = _byte_unit(limits.max_memory)
    parts = [f"memory <= {limits.max_memory / scale:,.{digits}f} {unit}"]
    if limits.max_latency is not None:
        unit_t, scale_t = ("s", 1.0) if limits.max_latency >= 1 else ("ms", 1e-3)
        parts.append(f"latency <= {limits.max_latency / scale_t:.{1 if unit_t == 'ms' else 2}f} {unit_t}")
    if limits.min_fps is not None:
        parts.append(f"images/s >= {format_significant(limits.min_fps)}")
    if limits.min_top1 is not None:
        parts.append(f"top-1 >= {limits.min_top1:.1f}%")
    if limits.max_energy is not None:
        parts.append(f"energy <= {format_significant(limits.max_energy)} J/image")
    return f"batch size {limits.batch_size}: " + ", ".join(parts)


# -- the verdicts ------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """One model against the limits: its figures at the batch size (None when there are none) and every
    limit it breaks, as short phrases with numbers and units; it passes when it breaks none."""

    model: Measured
    at: At | None
    broken: list[str]

    @property
    def passes(self) -> bool:
        return not self.broken


def judge(m: Measured, limits: Limits) -> Verdict:
    """`Verdict` of one model. Phrases, in this order: why there are no figures (``no successful
    measurement (1: oom, 2: crashed)``, ``failed at batch size 8: oom``, ``not measured at batch size 128
    (measured: 1, 8, 64)`` or ``not measured at batch size 32 (measured: 1, 8, 64; failed: 16: oom)``),
    then ``memory 1.52 GB > 1.00 GB`` / ``memory not measured``,
    ``latency 83.1 ms > 50.0 ms`` or ``1.2 images/s < 30 images/s``, ``energy 0.52 J/image > 0.3 J/image``
    / ``energy not measured``, and ``top-1 69.8% < 75.0%`` / ``no top-1 published``. A limit is broken
    only when strictly exceeded (a figure equal to its limit passes)."""
    b = limits.batch_size
    broken: list[str] = []
    at = None
    ok = m.ok
    cell = m.cells.get(b)
    if not ok:
        statuses = ", ".join(f"{size}: {c.get('status')}" for size, c in sorted(m.cells.items()))
        broken.append(f"no successful measurement ({statuses})" if statuses else "no measurements")
    elif cell is not None and cell.get("status") != "ok":
        broken.append(f"failed at batch size {b}: {cell.get('status')}")
    else:
        at = figures_at(m, b)
        if at is None:
            failed = ", ".join(f"{size}: {c.get('status')}" for size, c in sorted(m.cells.items())
                               if c.get("status") != "ok")
            broken.append(f"not measured at batch size {b} (measured: {_sizes(ok)}"
                          + (f"; failed: {failed})" if failed else ")"))
    wrong = wrong_results(m)
    if wrong:
        broken.append(wrong)
    if at is not None:
        if at.memory_bytes is None:
            broken.append("memory not measured")
        elif at.memory_bytes > limits.max_memory:
            broken.append(_memory_phrase(at.memory_bytes, limits.max_memory))
        if limits.max_latency is not None and at.latency_s > limits.max_latency:
            broken.append(_latency_phrase(at.latency_s, limits.max_latency))
        if limits.min_fps is not None and at.images_per_s < limits.min_fps:
            broken.append(_fps_phrase(at.images_per_s, limits.min_fps))
        if limits.max_energy is not None:
            if at.energy_per_image_j is None:
                broken.append("energy not measured")
            elif at.energy_per_image_j > limits.max_energy:
                broken.append(_energy_phrase(at.energy_per_image_j, limits.max_energy))
    if limits.min_top1 is not None:
        if m.top1 is None:
            broken.append(f"top-1 not measured in {m.setup.precision}: measure it with dnnbench eval"
                          if m.accuracy == "none" else "no top-1 published")
        elif m.top1 < limits.min_top1:
            broken.append(_top1_phrase(m.top1, limits.min_top1))
    return Verdict(model=m, at=at, broken=broken)


def _setup(m: Measured) -> tuple:
    return (m.input_size, *m.setup.key())


def recommend(models: list[Measured], limits: Limits) -> tuple[list[Verdict], list[Verdict]]:
    """(passing, failing) verdicts of every model (each model and setup judged on its own).

    Passing: top-1 descending (no published top-1 last), then latency ascending, then name. Failing:
    fewest broken limits first (the near misses), then top-1 descending (None last), then name."""
    verdicts = [judge(m, limits) for m in models]

    def top1_key(v: Verdict) -> tuple:
        return (v.model.top1 is None, -(v.model.top1 or 0.0))

    passing = sorted((v for v in verdicts if v.passes),
                     key=lambda v: (*top1_key(v), v.at.latency_s, v.model.model, _setup(v.model)))
    failing = sorted((v for v in verdicts if not v.passes),
                     key=lambda v: (len(v.broken), *top1_key(v), v.model.model, _setup(v.model)))
    return passing, failing


# -- output ------------------------------------------------------------------------------------------


def _labels(verdicts: list[Verdict]) -> dict[int, str]:
    """Model names, with the setup added where one name appears more than once."""
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.model.model] = counts.get(v.model.model, 0) + 1
    out = {}
    for v in verdicts:
        m = v.model
        out[id(v)] = m.model if counts[m.model] == 1 else \
            f"{m.model} ({m.input_size} px, {m.setup.label(machine=True)})"
    return out


def _note(at: At) -> str:
    notes = []
    if at.interpolated and at.between:
        notes.append(f"interpolated between b{at.between[0]} and b{at.between[1]}")
    if at.disturbed:
        notes.append("busy machine")
    return "; ".join(notes)


def speed_comparison(passing: list[Verdict]) -> str | None:
    """The fastest passing model against the next fastest, said only as far as the measurements
    support it (``analysis.compare``: paired over the rounds where both have them)."""
    from .compare import latency_ratio

    measured = sorted((v for v in passing if v.at and v.at.cell), key=lambda v: v.at.latency_s)
    if len(measured) < 2:
        return None
    first, second = measured[0], measured[1]
    ratio = latency_ratio(first.at.cell, second.at.cell)
    return ratio.describe(first.model.model, second.model.model) if ratio else None


def render(passing: list[Verdict], failing: list[Verdict], limits: Limits) -> str:
    """A plain-text report for the terminal: the limits, a table of the passing models (model, top-1 %,
    latency ms, images/s, memory MiB, energy J/image or ``-``, and a note where the figures are
    interpolated), then every failing model with the limits it breaks."""
    labels = _labels([*passing, *failing])
    lines = [f"Limits at {describe_limits(limits)}"]
    total = len(passing) + len(failing)
    if passing:
        lines.append(f"{len(passing)} of {total} models meet them, most accurate first:")
        head = ["model", "top-1 %", "latency ms", "images/s", "memory MiB", "energy J/image", ""]
        rows = []
        for v in passing:
            at = v.at
            rows.append([labels[id(v)], "-" if v.model.top1 is None else f"{v.model.top1:.2f}",
                         format_significant(at.latency_s * 1e3) if at.latency_s < 1 else f"{at.latency_s * 1e3:,.0f}",
                         f"{at.images_per_s:,.1f}", format_mib(at.memory_bytes),
                         "-" if at.energy_per_image_j is None else format_significant(at.energy_per_image_j), _note(at)])
        widths = [max(len(r[k]) for r in [head, *rows]) for k in range(len(head))]
        for r in [head, *rows]:
            cells = [r[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(r[1:-1], widths[1:-1], strict=True)), r[-1]]
            lines.append("  ".join(cells).rstrip())
        comparison = speed_comparison(passing)
        if comparison:
            lines.append(f"Fastest: {comparison}.")
    else:
        lines.append(f"None of the {total} models meets them." if total else "No model was measured.")
    measured = [v for v in [*passing, *failing] if v.model.accuracy == "measured"]
    if measured:
        lines.append("Top-1 measured by dnnbench eval (published beside it) for: " + "; ".join(
            f"{labels[id(v)]} {v.model.top1:.2f}%" + (f" (published {v.model.top1_published:.2f}%, "
                                                      f"{v.model.top1 - v.model.top1_published:+.2f})"
                                                      if v.model.top1_published is not None else "")
            for v in measured) + ".")
    busy = [labels[id(v)] for v in [*passing, *failing] if v.at and v.at.disturbed]
    if busy:
        lines.append(f"Measured while other processes used the machine (busy machine: times likely too slow): "
                     f"{', '.join(busy)}; measure them again on a quiet machine to trust these verdicts.")
    if failing:
        lines.append("")
        lines.append(f"{len(failing)} models do not:")
        for v in failing:
            lines.append(f"  {labels[id(v)]}: {'; '.join(v.broken)}")
    return "\n".join(lines)


def render_per_machine(passing: list[Verdict], failing: list[Verdict], limits: Limits) -> str:
    """`render`, once per machine where the verdicts span several: the best model is a machine's answer."""
    machines = sorted({v.model.setup.machine for v in [*passing, *failing]}, key=str)
    if len(machines) < 2:
        return render(passing, failing, limits)
    parts = [f"{len(machines)} machines measured; the answer for each (recommend --machine NAME for one):"]
    for machine in machines:
        mine = [[v for v in vs if v.model.setup.machine == machine] for vs in (passing, failing)]
        best = mine[0][0].model.model if mine[0] else "none"
        parts.append(f"\n== on {short_name(machine)}: {best} ==\n" + render(*mine, limits))
    return "\n".join(parts)


def as_json(passing: list[Verdict], failing: list[Verdict], limits: Limits) -> list[dict]:
    """One dict per model, passing ones first (in `recommend`'s order), with the keys model, passes,
    top1 (%), latency_s, images_per_s, memory_bytes, energy_per_image_j, interpolated, between
    ([below, above] or None), broken (the phrases), plus input_size and the setup's fields (machine,
    device, backend, precision, threads, layout) to tell setups apart. Figures are None where the model has none at the batch size."""
    out = []
    for v in [*passing, *failing]:
        at, m = v.at, v.model
        out.append({
            "model": m.model, "passes": v.passes, "top1": m.top1, "top1_source": m.accuracy,
            "top1_published": m.top1_published,
            "latency_s": at.latency_s if at else None, "images_per_s": at.images_per_s if at else None,
            "memory_bytes": at.memory_bytes if at else None,
            "energy_per_image_j": at.energy_per_image_j if at else None,
            "interpolated": at.interpolated if at else False,
            "between": list(at.between) if at and at.between else None,
            "broken": list(v.broken), "batch_size": limits.batch_size,
            "disturbed": at.disturbed if at else None,
            "latency_ci_s": [at.cell.get("latency_ci_low_s"), at.cell.get("latency_ci_high_s")]
            if at and at.cell else None,
            "input_size": m.input_size, **m.setup.to_dict()})
    return out
