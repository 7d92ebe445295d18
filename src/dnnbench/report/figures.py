"""The figures of the report, drawn with matplotlib from `Measured` records.

Every figure is a `Chart`: drawn, with its finding in words, or not drawn, with the reason. Points
that a reader can hover carry their data in `points` (same order as matplotlib writes the markers of
the collection whose gid is ``<key>-pts-<i>``), so the HTML page can show each point's model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..analysis import PREDICT_METHODS, fits  # noqa: E402
from ..analysis import machines as machines_  # noqa: E402
from ..analysis.frontier import pareto_front  # noqa: E402
from ..analysis.recommend import figures_at  # noqa: E402
from ..analysis.setups import deployments, speedups  # noqa: E402
from ..measure import busy  # noqa: E402
from ..setup import memory_bytes  # noqa: E402
from ..text import short_name  # noqa: E402
from ..units import format_rate, format_significant  # noqa: E402

plt.rcParams.update({"svg.fonttype": "none", "figure.dpi": 100, "savefig.dpi": 110, "font.size": 9,
                     "axes.grid": True, "grid.alpha": 0.3, "svg.hashsalt": "dnnbench"})


@dataclass
class Chart:
    key: str
    title: str
    finding: str = ""
    reason: str | None = None  # why it is not drawn
    series: list[list[dict]] = field(default_factory=list)  # hover data per scatter collection
    files: dict[str, Path] = field(default_factory=dict)
    omitted: str = ""  # which models the figure leaves out, and why (appended to the finding)
    disturbed: list[tuple[str, int]] = field(default_factory=list)  # cells drawn from a busy machine
    busy_note: str = ""  # the sentence about them (appended to the finding)


MIB = 2**20  # memory is shown in binary units, as everywhere in dnnbench


def _as_cell(served, point: dict) -> dict:
    """A point under load as the busy rings read a cell: its model, its rate for a batch, its load."""
    return {"model": served.model, "batch_size": f"{format_rate(point['qps'])}/s", "disturbed": point.get("disturbed"),
            "contention": point.get("contention")}


def cells_by_model(cells) -> str:
    """(model, batch) pairs as ``resnet18 (batch 1, 2, 16), vgg16 (batch 4)``, in natural order."""
    from ..text import natural_key

    by: dict[str, list[int]] = {}
    for model, batch in cells:
        by.setdefault(model, []).append(batch)
    return ", ".join(f"{m} (batch {', '.join(map(str, sorted(by[m])))})" for m in sorted(by, key=natural_key))


def _ms(s: float) -> str:
    return f"{s * 1e3:,.0f} ms" if s >= 0.1 else f"{format_significant(s * 1e3)} ms"


def _mib(b: float) -> str:
    return f"{b / MIB:,.0f} MiB"


def _label(ax, x, y, text):
    """Label the point (x, y); the labels of an axes are placed together when the figure is saved."""
    if not hasattr(ax, "_dnnbench_labels"):
        ax._dnnbench_labels = []
    ax._dnnbench_labels.append((x, y, text))


# where a label may go, around its point: (dx, dy) in points, horizontal and vertical alignment
_SPOTS = [(4, 3, "left", "bottom"), (4, -3, "left", "top"), (-4, 3, "right", "bottom"), (-4, -3, "right", "top"),
          (0, 7, "center", "bottom"), (0, -7, "center", "top"), (6, 12, "left", "bottom"), (6, -12, "left", "top"),
          (-6, 12, "right", "bottom"), (-6, -12, "right", "top"), (0, 20, "center", "bottom"),
          (0, -20, "center", "top")]


def _annotate(ax, x, y, text, spot):
    dx, dy, ha, va = spot
    return ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=7, parse_math=False,
                       ha=ha, va=va)


def _place_labels(fig) -> None:
    """Greedy placement: each label takes the first spot around its point where it overlaps no label
    placed before and stays inside the axes; failing that, the first free spot outside them; where
    none is free, the first spot."""
    if not any(getattr(ax, "_dnnbench_labels", None) for ax in fig.axes):
        return
    fig.canvas.draw()  # settles autoscaled limits, so data and display coordinates are final
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        items = getattr(ax, "_dnnbench_labels", [])
        area = ax.get_window_extent(renderer)
        placed = []
        for x, y, text in sorted(items, key=lambda t: (-t[1], t[0])):
            boxes = []  # every spot's box, measured with a trial label
            for spot in _SPOTS:
                trial = _annotate(ax, x, y, text, spot)
                boxes.append((spot, trial.get_window_extent(renderer)))
                trial.remove()
            free = [(spot, box) for spot, box in boxes if not any(box.overlaps(other) for other in placed)]
            inside = [(spot, box) for spot, box in free if box.x0 >= area.x0 and box.x1 <= area.x1
                      and box.y0 >= area.y0 and box.y1 <= area.y1]
            spot, box = (inside or free or boxes)[0]
            _annotate(ax, x, y, text, spot)
            placed.append(box)


class Drawer:
    """Draws the figures of ``models`` (one setup each; the report passes those of one setup) and the
    speed-up of every setup in ``everything`` (all the database's models and setups) over eager fp32."""

    def __init__(self, models, out: Path, batch: int, peak_flops: float | None, limits=None, everything=None,
                 predicted=None, serving=None):
        self.models = models
        self.serving = serving or []  # the server scenario's points (`Store.serving`)
        self.predicted = predicted  # analysis.predictor.for_report(), with "top1" by predicted model
        self.everything = everything if everything is not None else models
        self.out = out
        self.batch = batch
        self.peak = peak_flops
        self.limits = limits
        self.charts: list[Chart] = []

    # -- helpers -----------------------------------------------------------------------------------

    def _save(self, chart: Chart, fig) -> None:
        if not getattr(fig, "_dnnbench_laid_out", False):
            fig.tight_layout()
        _place_labels(fig)
        if chart.omitted:
            chart.finding = f"{chart.finding} {chart.omitted}".strip()
        if chart.disturbed:
            cells = set(chart.disturbed)
            chart.busy_note = (f"Ringed in red: {len(cells)} cell{'s' if len(cells) != 1 else ''} measured while "
                               f"other processes used the machine ({cells_by_model(cells)}): their times are likely "
                               "too slow, and the finding above rests on them.")
            chart.finding = f"{chart.finding} {chart.busy_note}".strip()
        for ext in ("png", "svg"):
            path = self.out / f"{chart.key}.{ext}"
            with plt.rc_context({"svg.hashsalt": chart.key}):  # ids unique per figure once inlined in one page
                fig.savefig(path, metadata={"Date": None} if ext == "svg" else None)
            chart.files[ext] = path
        plt.close(fig)
        self.charts.append(chart)

    def _skip(self, chart: Chart, reason: str) -> None:
        chart.reason = reason
        self.charts.append(chart)

    def _scatter(self, ax, chart: Chart, xs, ys, infos, cells=None, **kw):
        """Hoverable points; where ``cells`` (one per point) were disturbed by other processes, the
        point is ringed in red, its tooltip says so, and the chart lists it under its finding."""
        xs, ys, infos = list(xs), list(ys), list(infos)
        coll = ax.scatter(xs, ys, **kw)
        coll.set_gid(f"{chart.key}-pts-{len(chart.series)}")
        rings = []
        for i, cell in enumerate(cells or []):
            if cell and cell.get("disturbed"):
                infos[i] = {**infos[i], "machine": f"busy: {busy.cause(cell)}"}
                chart.disturbed.append((infos[i]["model"], cell["batch_size"]))
                rings.append((xs[i], ys[i]))
        if rings:
            ax.scatter(*zip(*rings, strict=True), s=4 * kw.get("s", 20), facecolors="none", edgecolors="red",
                       linewidths=1.2, zorder=4)
        chart.series.append(infos)
        return coll

    def _bars(self, chart: Chart, ms, values, color: str, xlabel: str, infos):
        """One horizontal bar per model, with a hoverable dot at the end of each bar."""
        fig, ax = plt.subplots(figsize=(7.5, 0.25 * len(ms) + 1.2))
        ax.barh(range(len(ms)), values, color=color)
        self._scatter(ax, chart, values, range(len(ms)), infos, s=8, c="k", zorder=3)
        ax.set_yticks(range(len(ms)), [m.model for m in ms])
        for t in ax.get_yticklabels():
            t.set_parse_math(False)
        ax.set_xlabel(xlabel)
        return fig, ax

    @staticmethod
    def _info(m, **figures) -> dict:
        return {"model": m.model, **{k: v for k, v in figures.items() if v is not None}}

    def _without_top1(self) -> str:
        missing = sorted(m.model for m in self.models if m.top1 is None)
        return f"Not shown, having no published top-1: {', '.join(missing)}." if missing else ""

    def _at(self, batch: int):
        out = []
        for m in self.models:
            cell = m.ok.get(batch)
            if cell:
                out.append((m, cell))
        return out

    # -- the figures -------------------------------------------------------------------------------

    def draw_all(self) -> list[Chart]:
        for draw in (self.ball_chart, self.top1_bars, self.time_vs_batch, self.power_vs_batch, self.memory_vs_batch,
                     self.ops_vs_time, self.ops_vs_power, self.top1_vs_fps, self.top1_vs_ops, self.density_bars,
                     self.params_vs_memory, self.pareto, self.efficiency, self.speedup, self.artifacts,
                     self.predicted_vs_measured,
                     self.predicted_ball_chart, self.machines_side_by_side, self.machine_ratios, self.under_load):
            draw()
        return self.charts

    def under_load(self):
        """The server scenario: each (model, setup, policy)'s tail latency bound against the offered rate,
        the limit it was searched at, and its peak."""
        from ..analysis.serving import group, peak

        chart = Chart("under_load", "Tail latency under load: the percentile's 95% upper bound against the rate "
                                    "of Poisson arrivals")
        measured = [s for s in group(self.serving) if s.points]
        if not measured:
            return self._skip(chart, "nothing was measured under load: `dnnbench run MODEL --scenario server --p99 "
                                     "100ms` serves a model under Poisson arrivals and finds its peak rate")
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        limits, found = set(), []
        for i, served in enumerate(sorted(measured, key=lambda s: (s.model, s.setup.runtime(), s.max_batch))):
            pts = sorted((p for p in served.points if p.get("q_high_s")), key=lambda p: p["qps"])
            if not pts:
                continue
            q, limit = pts[0]["q"], pts[0]["limit_s"]
            limits.add((q, limit))
            name = f"{served.model} ({served.setup.runtime()}, batch {served.max_batch}, {served.instances} inst.)"
            color = plt.cm.tab10(i % 10)
            ax.plot([p["qps"] for p in pts], [p["q_high_s"] * 1e3 for p in pts], "-", color=color, lw=1, alpha=0.6)
            self._scatter(ax, chart, [p["qps"] for p in pts], [p["q_high_s"] * 1e3 for p in pts],
                          [{"model": name, "rate": f"{format_rate(p['qps'])} requests/s",
                            f"p{100 * q:g} bound": f"{p['q_high_s'] * 1e3:.3g} ms", "verdict": p["verdict"]}
                           for p in pts], cells=[_as_cell(served, p) for p in pts], s=20, color=color, label=name,
                          zorder=3)
            best = peak(served, q, limit)
            if best.qps is not None:
                found.append((best.qps, name, q, limit))
        for q, limit in sorted(limits):
            ax.axhline(limit * 1e3, color="k", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("offered rate (requests per second, Poisson, log scale)")
        ax.set_ylabel("percentile's 95% upper bound (ms, log scale)")
        ax.legend(fontsize=7, loc="upper left")
        if found:
            top = max(found)
            chart.finding = (f"{top[1]} sustains the most: {format_rate(top[0])} requests/s with p{100 * top[2]:g} "
                             f"under {top[3] * 1e3:.3g} ms (its 95% upper bound). "
                             + "; ".join(f"{n}: {format_rate(r)}/s" for r, n, _, _ in sorted(found, reverse=True)[1:6]))
        else:
            chart.finding = "No rate measured met its limit."
        self._save(chart, fig)

    def ball_chart(self):
        chart = Chart("ball_chart", "Top-1 accuracy versus operations; blob area proportional to parameters")
        chart.omitted = self._without_top1()
        ms = [m for m in self.models if m.top1 is not None and m.macs and m.params]
        if not ms:
            return self._skip(chart, "no measured model has both a published top-1 accuracy and an operation count")
        fig, ax = plt.subplots(figsize=(7.5, 5))
        biggest = max(m.params for m in ms)
        sizes = [2000 * m.params / biggest + 10 for m in ms]
        self._scatter(ax, chart, [m.macs / 1e9 for m in ms], [m.top1 for m in ms],
                      [self._info(m, top1=f"{m.top1:.2f} %", macs=f"{format_significant(m.macs / 1e9)} G",
                                  params=f"{format_significant(m.params / 1e6)} M") for m in ms],
                      s=sizes, alpha=0.45, c=range(len(ms)), cmap="tab20", edgecolors="k", linewidths=0.5)
        for m in ms:
            _label(ax, m.macs / 1e9, m.top1, m.model)
        ax.set_xlabel("operations (G-MACs per image)")
        ax.set_ylabel("top-1 accuracy (%)")
        best = max(ms, key=lambda m: m.top1)
        cheap = min(ms, key=lambda m: m.macs)
        chart.finding = (f"{best.model} is the most accurate ({best.top1:.2f} % top-1, {format_significant(best.macs / 1e9)} G-MACs, "
                         f"{format_significant(best.params / 1e6)} M params); {cheap.model} needs the fewest operations "
                         f"({format_significant(cheap.macs / 1e9)} G-MACs, {cheap.top1:.2f} % top-1).")
        self._save(chart, fig)

    def top1_bars(self):
        chart = Chart("top1", "Top-1 accuracy per model")
        chart.omitted = self._without_top1()
        ms = sorted((m for m in self.models if m.top1 is not None), key=lambda m: m.top1)
        if not ms:
            return self._skip(chart, "no measured model has a published top-1 accuracy")
        fig, ax = self._bars(chart, ms, [m.top1 for m in ms], "#4c72b0", "top-1 accuracy (%)",
                             [self._info(m, top1=f"{m.top1:.2f} %", top5=m.top5 and f"{m.top5:.2f} %",
                                         source=m.accuracy_source) for m in ms])
        ax.set_xlim(min(m.top1 for m in ms) - 5, max(m.top1 for m in ms) + 2)
        chart.finding = f"Top-1 ranges from {ms[0].top1:.2f} % ({ms[0].model}) to {ms[-1].top1:.2f} % ({ms[-1].model})."
        self._save(chart, fig)

    def _per_batch(self, chart: Chart, value, ylabel: str, log: bool, fmt, fit_memory: bool = False):
        ms = [m for m in self.models if sum(value(c) is not None for c in m.ok.values()) >= 1]
        if not ms:
            return None
        fig, ax = plt.subplots(figsize=(7.5, 5))
        fitted = []
        for i, m in enumerate(ms):
            pts = [(b, value(c)) for b, c in m.ok.items() if value(c) is not None]
            xs, ys = zip(*pts, strict=True)
            color = plt.get_cmap("tab20")(i % 20)
            scale = MIB if fit_memory else 1.0
            shown = [y / scale for y in ys]
            if fit_memory and len(pts) >= 2:  # the fit as a dashed line, the measurements as points
                fit = fits.hinge_fit(list(xs), list(ys))
                fitted.append((m, fit))
                grid = [xs[0] * (xs[-1] / xs[0]) ** (k / 60) for k in range(61)]
                ax.plot(grid, [fit(g) / scale for g in grid], color=color, lw=1, ls="--", label=m.model)
            else:
                ax.plot(xs, shown, color=color, lw=1.2, label=m.model)
            self._scatter(ax, chart, xs, shown, [self._info(m, batch=b, value=fmt(y)) for b, y in pts],
                          cells=None if fit_memory else [m.ok[b] for b, _ in pts], s=14, color=color, zorder=3)
        ax.set_xscale("log", base=2)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("batch size (images)")
        ax.set_ylabel(ylabel)
        legend = ax.legend(fontsize=6, ncol=2, loc="best")
        for t in legend.get_texts():
            t.set_parse_math(False)
        return fig, ms, fitted

    def time_vs_batch(self):
        chart = Chart("time_vs_batch", "Time per image versus batch size")
        got = self._per_batch(chart, lambda c: c["time_per_image_s"] * 1e3 if c.get("time_per_image_s") else None,
                              "time per image (ms, log scale)", True, lambda v: f"{format_significant(v)} ms per image")
        if got is None:
            return self._skip(chart, "no cell was measured successfully")
        fig, ms, _ = got
        gains = []
        for m in ms:
            ok = m.ok
            if len(ok) >= 2:
                first, last = next(iter(ok)), list(ok)[-1]
                gains.append((ok[first]["time_per_image_s"] / ok[last]["time_per_image_s"], m, first, last))
        if gains:
            gain, m, first, last = max(gains, key=lambda g: g[0])
            chart.finding = (f"Batching helps {m.model} most: time per image falls {gain:.2f}x from batch {first} to "
                             f"batch {last}.")
        self._save(chart, fig)

    def power_vs_batch(self):
        chart = Chart("power_vs_batch", "Power versus batch size")
        if not any(c.get("power_w") for m in self.models for c in m.ok.values()):
            reasons = {c.get("energy_reason") for m in self.models for c in m.cells.values() if c.get("energy_reason")}
            return self._skip(chart, "no energy counter was readable during the measurements"
                              + (f": {sorted(reasons)[0]}" if reasons else ""))
        got = self._per_batch(chart, lambda c: c.get("power_w"), "average power (W)", False, lambda v: f"{format_significant(v)} W")
        fig, ms, _ = got
        powers = [c["power_w"] for m in ms for c in m.ok.values() if c.get("power_w")]
        chart.finding = (f"Power stays between {format_significant(min(powers))} W and {format_significant(max(powers))} W across models and batch "
                         "sizes (Canziani et al. found it independent of both).")
        self._save(chart, fig)

    def memory_vs_batch(self):
        chart = Chart("memory_vs_batch", "Memory versus batch size, with the fit 'constant, then linear'")

        def mem(c):
            return memory_bytes(c)

        got = self._per_batch(chart, mem, "peak memory (MiB)", False, lambda v: _mib(v), fit_memory=True)
        if got is None:
            return self._skip(chart, "no cell has a memory figure")
        fig, ms, fitted = got
        if fitted:
            def flat_first(mm, f) -> bool:  # the knee lies above the smallest batch size measured
                return f.knee > min(b for b, c in mm.ok.items() if mem(c) is not None)

            def says(mm, f) -> str:
                if flat_first(mm, f):
                    return (f"{mm.model}: {_mib(f.base)} up to batch {f.knee:g}, then "
                            f"{format_significant(f.slope / MIB)} MiB per image.")
                return f"{mm.model}: {_mib(f.base)} at batch {f.knee:g}, then {format_significant(f.slope / MIB)} MiB per image."

            m, fit = max(fitted, key=lambda f: f[1].slope)
            flat = [mm.model for mm, f in fitted if flat_first(mm, f)]
            if not flat:
                shape = (f"Memory grows linearly from the smallest batch size for all {len(fitted)} models: no "
                         "constant part (the papers' flat start came from a GPU allocator's reserve).")
            elif len(flat) == len(fitted):
                shape = f"Memory stays constant up to a batch size, then grows linearly, for all {len(fitted)} models."
            else:
                shape = (f"Memory stays constant up to a batch size, then grows linearly, for {len(flat)} of "
                         f"{len(fitted)} models ({', '.join(flat)}); the others grow from the smallest batch size.")
            chart.finding = (f"{shape} The steepest, {says(m, fit)[:-1]} (R² = {fit.r2:.3f}). "
                             + " ".join(says(mm, f) for mm, f in fitted if mm is not m)[:1500])
        self.memory_fits = fitted
        self._save(chart, fig)

    def _ops_scatter(self, chart, value, ylabel, fmt, fit_it=True):
        pts = [(m, c) for m, c in self._at(self.batch) if m.macs and value(c) is not None]
        if len(pts) < 1:
            return None
        fig, ax = plt.subplots(figsize=(7.5, 5))
        xs = [m.macs / 1e9 for m, _ in pts]
        ys = [value(c) for _, c in pts]
        self._scatter(ax, chart, xs, ys, [self._info(m, macs=f"{format_significant(m.macs / 1e9)} G", value=fmt(y))
                                          for (m, _), y in zip(pts, ys, strict=True)],
                      cells=[c for _, c in pts], s=24, zorder=3)
        for (m, _), x, y in zip(pts, xs, ys, strict=True):
            _label(ax, x, y, m.model)
        fit = None
        if fit_it and len(pts) >= 3 and len(set(xs)) >= 2:  # a line needs two distinct x values
            fit = fits.linear_fit(xs, ys)
            grid = [0, max(xs) * 1.05]
            ax.plot(grid, [fit(g) for g in grid], "r--", lw=1, label=f"linear fit, R² = {fit.r2:.3f}")
            ax.legend(fontsize=7)
        ax.set_xlabel("operations (G-MACs per image)")
        ax.set_ylabel(ylabel)
        return fig, pts, fit

    def ops_vs_time(self):
        b = self.batch
        chart = Chart("ops_vs_time", f"Operations versus time per image at batch size {b}, with the linear fit")
        got = self._ops_scatter(chart, lambda c: c["time_per_image_s"] * 1e3, f"time per image at batch {b} (ms)",
                                lambda v: f"{format_significant(v)} ms per image")
        if got is None:
            return self._skip(chart, f"no model was measured at batch size {b} (pick another with --batch-size)")
        fig, pts, fit = got
        if fit:
            slowest = max(pts, key=lambda p: p[1]["time_per_image_s"])
            chart.finding = (f"Operations predict time per image with R² = {fit.r2:.2f} on this machine at batch size "
                             f"{b} (n = {fit.n}): {format_significant(fit.slope)} ms per G-MAC {'-' if fit.intercept < 0 else '+'} {format_significant(abs(fit.intercept))} ms. "
                             f"{slowest[0].model} is the slowest: {_ms(slowest[1]['time_per_image_s'])} per image.")
        else:
            chart.finding = "A fit needs at least 3 models."
        self._save(chart, fig)

    def ops_vs_power(self):
        chart = Chart("ops_vs_power", f"Operations versus power at batch size {self.batch}")
        got = self._ops_scatter(chart, lambda c: c.get("power_w"), "average power (W)", lambda v: f"{format_significant(v)} W")
        if got is None:
            return self._skip(chart, "no energy counter was readable during the measurements, so there is no power "
                                     "figure")
        fig, pts, fit = got
        if fit:
            chart.finding = f"Power against operations: slope {format_significant(fit.slope)} W per G-MAC, R² = {fit.r2:.2f}."
        self._save(chart, fig)

    def top1_vs_fps(self):
        b = self.batch
        chart = Chart("top1_vs_fps", f"Top-1 accuracy versus images per second at batch size {b}, with the linear "
                                     "upper bound")
        chart.omitted = self._without_top1()
        pts = [(m, c) for m, c in self._at(b) if m.top1 is not None]
        if not pts:
            return self._skip(chart, f"no model with a published top-1 was measured at batch size {b}")
        fig, ax = plt.subplots(figsize=(7.5, 5))
        xs = [c["images_per_s"] for _, c in pts]
        ys = [m.top1 for m, _ in pts]
        self._scatter(ax, chart, xs, ys, [self._info(m, top1=f"{m.top1:.2f} %", fps=f"{format_significant(c['images_per_s'])} images/s")
                                          for m, c in pts], cells=[c for _, c in pts], s=24, zorder=3)
        for (m, _), x, y in zip(pts, xs, ys, strict=True):
            _label(ax, x, y, m.model)
        bound = fits.upper_bound_line(xs, ys)
        if bound:
            grid = [0, max(xs) * 1.05]
            ax.plot(grid, [bound.intercept + bound.slope * g for g in grid], "r--", lw=1,
                    label=f"upper bound: {bound.intercept:.1f} % {bound.slope:+.3g} % per image/s")
            ax.legend(fontsize=7)
            sign = "-" if bound.slope < 0 else "+"
            chart.finding = (f"No model lies above the line top-1 = {bound.intercept:.2f} % {sign} "
                             f"{format_significant(abs(bound.slope))} % x (images/s): at this batch size, each extra image per second "
                             f"costs at least {format_significant(-bound.slope)} points of top-1.")
        ax.set_xlabel(f"images per second at batch {b}")
        ax.set_ylabel("top-1 accuracy (%)")
        self._save(chart, fig)

    def top1_vs_ops(self):
        chart = Chart("top1_vs_ops", "Top-1 accuracy versus operations, with the hyperbolic fit")
        chart.omitted = self._without_top1()
        ms = [m for m in self.models if m.top1 is not None and m.macs]
        if len(ms) < 1:
            return self._skip(chart, "no measured model has both a top-1 and an operation count")
        fig, ax = plt.subplots(figsize=(7.5, 5))
        xs = [m.macs / 1e9 for m in ms]
        ys = [m.top1 for m in ms]
        self._scatter(ax, chart, xs, ys, [self._info(m, top1=f"{m.top1:.2f} %", macs=f"{format_significant(m.macs / 1e9)} G")
                                          for m in ms], s=24, zorder=3)
        for m, x, y in zip(ms, xs, ys, strict=True):
            _label(ax, x, y, m.model)
        if len(ms) >= 3 and len(set(xs)) >= 2:
            fit = fits.hyperbolic_fit(xs, ys)
            grid = [min(xs) * (max(xs) / min(xs)) ** (k / 80) for k in range(81)]
            ax.plot(grid, [fit(g) for g in grid], "r--", lw=1, label=f"top-1 = {fit.a:.1f} - {format_significant(fit.b)} / G-MACs, "
                                                                        f"R² = {fit.r2:.2f}")
            ax.legend(fontsize=7)
            chart.finding = (f"Accuracy saturates with operations: top-1 ≈ {fit.a:.1f} % - {format_significant(fit.b)} / G-MACs "
                             f"(R² = {fit.r2:.2f}, n = {fit.n}); a little more accuracy costs many more operations.")
        ax.set_xscale("log")
        ax.set_xlabel("operations (G-MACs per image, log scale)")
        ax.set_ylabel("top-1 accuracy (%)")
        self._save(chart, fig)

    def density_bars(self):
        chart = Chart("accuracy_density", "Accuracy density: top-1 per million parameters")
        chart.omitted = self._without_top1()
        ms = sorted((m for m in self.models if m.accuracy_density is not None), key=lambda m: m.accuracy_density)
        if not ms:
            return self._skip(chart, "no measured model has a published top-1 accuracy")
        fig, ax = self._bars(chart, ms, [m.accuracy_density for m in ms], "#55a868",
                             "top-1 (%) per million parameters (log scale)",
                             [self._info(m, density=f"{format_significant(m.accuracy_density)} % per M params", top1=f"{m.top1:.2f} %",
                                         params=f"{format_significant(m.params / 1e6)} M") for m in ms])
        ax.set_xscale("log")
        chart.finding = (f"{ms[-1].model} uses its parameters best ({format_significant(ms[-1].accuracy_density)} % per M params), "
                         f"{ms[0].model} least ({format_significant(ms[0].accuracy_density)}).")
        self._save(chart, fig)

    def params_vs_memory(self):
        chart = Chart("params_vs_memory", "Model size (parameters) versus memory footprint at batch size 1")
        pts = [(m, c) for m, c in self._at(1) if m.params and memory_bytes(c)]
        if not pts:
            return self._skip(chart, "no model was measured at batch size 1")
        fig, ax = plt.subplots(figsize=(7.5, 5))
        xs = [m.params / 1e6 for m, _ in pts]
        ys = [memory_bytes(c) / MIB for _, c in pts]
        self._scatter(ax, chart, xs, ys, [self._info(m, params=f"{format_significant(m.params / 1e6)} M", memory=f"{y:,.0f} MiB")
                                          for (m, _), y in zip(pts, ys, strict=True)], s=24, zorder=3)
        for (m, _), x, y in zip(pts, xs, ys, strict=True):
            _label(ax, x, y, m.model)
        ax.set_xlabel("parameters (M)")
        ax.set_ylabel("peak memory at batch 1 (MiB)")
        if len(pts) >= 3 and len(set(xs)) >= 2:
            fit = fits.linear_fit(xs, ys)
            chart.finding = (f"Memory at batch size 1 ≈ {fit.intercept:,.0f} MiB + {format_significant(fit.slope)} MiB "
                             f"per million parameters (R² = {fit.r2:.2f}): the runtime's floor of about "
                             f"{fit.intercept:,.0f} MiB "
                             "dominates small models.")
        self._save(chart, fig)

    def pareto(self):
        b = self.batch
        chart = Chart("pareto", f"Pareto frontier of top-1 versus latency at batch size {b}")
        chart.omitted = self._without_top1()
        pts = [(m, c) for m, c in self._at(b) if m.top1 is not None]
        if len(pts) < 2:
            return self._skip(chart, f"fewer than two models with a top-1 were measured at batch size {b}")
        fig, ax = plt.subplots(figsize=(7.5, 5))
        xs = [c["latency_median_s"] * 1e3 for _, c in pts]
        ys = [m.top1 for m, _ in pts]
        self._scatter(ax, chart, xs, ys, [self._info(m, top1=f"{m.top1:.2f} %", latency=_ms(c["latency_median_s"]))
                                          for m, c in pts], cells=[c for _, c in pts], s=24, zorder=3)
        for (m, _), x, y in zip(pts, xs, ys, strict=True):
            _label(ax, x, y, m.model)
        front = pareto_front(pts, cost=lambda p: p[1]["latency_median_s"], value=lambda p: p[0].top1)
        ax.step([p[1]["latency_median_s"] * 1e3 for p in front], [p[0].top1 for p in front], "g-", where="post",
                lw=1.5, label="Pareto frontier")
        limit = self.limits.max_latency if self.limits and self.limits.max_latency else None
        if limit:
            ax.axvspan(0, limit * 1e3, color="g", alpha=0.08, label=f"latency ≤ {format_significant(limit * 1e3)} ms")
        ax.set_xscale("log")
        ax.set_xlabel(f"latency of a batch of {b} (ms, log scale)")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.legend(fontsize=7)
        chart.finding = ("On the frontier (no model is both faster and more accurate): "
                         + ", ".join(f"{p[0].model} ({_ms(p[1]['latency_median_s'])}, {p[0].top1:.2f} %)" for p in front)
                         + ".")
        self._save(chart, fig)

    def efficiency(self):
        chart = Chart("efficiency", "Achieved FLOP/s as a fraction of the machine's measured peak")
        precision = self.models[0].setup.precision if self.models else "fp32"
        if not self.peak:
            return self._skip(chart, f"the database holds no measured {precision} peak FLOP/s for this setup's machine "
                                     "(`dnnbench run` records the peak of each precision it measures)")
        ms = [m for m in self.models if m.macs and m.ok]
        if not ms:
            return self._skip(chart, "no measured model has an operation count")
        fig, ax = plt.subplots(figsize=(7.5, 5))
        best = (0.0, None, None)
        for i, m in enumerate(ms):
            pts = [(b, 2 * m.macs / c["time_per_image_s"] / self.peak) for b, c in m.ok.items()]
            xs, ys = zip(*pts, strict=True)
            color = plt.get_cmap("tab20")(i % 20)
            ax.plot(xs, [100 * y for y in ys], color=color, lw=1.2, label=m.model)
            self._scatter(ax, chart, xs, [100 * y for y in ys],
                          [self._info(m, batch=b, efficiency=f"{format_significant(100 * y)} % of peak",
                                      achieved=f"{format_significant(y * self.peak / 1e9)} GFLOP/s") for b, y in pts],
                          cells=[m.ok[b] for b, _ in pts], s=14, color=color, zorder=3)
            top = max(pts, key=lambda p: p[1])
            if top[1] > best[0]:
                best = (top[1], m, top[0])
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size (images)")
        ax.set_ylabel(f"achieved FLOP/s (% of the measured {precision} peak, {format_significant(self.peak / 1e9)} "
                      "GFLOP/s)")
        legend = ax.legend(fontsize=6, ncol=2)
        for t in legend.get_texts():
            t.set_parse_math(False)
        worst = min(((2 * m.macs / c["time_per_image_s"] / self.peak, m) for m in ms for c in m.ok.values()),
                    key=lambda w: w[0])
        chart.finding = (f"{best[1].model} runs this hardware best: {format_significant(100 * best[0])} % of the {precision} peak "
                         f"{format_significant(self.peak / 1e9)} GFLOP/s at batch {best[2]}; {worst[1].model} reaches as little as "
                         f"{format_significant(100 * worst[0])} %.")
        if best[0] > 1:
            chart.finding += (" Above 100 %: the peak is measured by a matrix product on a machine whose load "
                              "varies, and this model's kernels ran faster than the best product seen, so read "
                              "the peak as a lower bound of the ceiling.")
        self._save(chart, fig)

    def speedup(self):
        chart = Chart("speedup", "Speed-up of each setup over eager fp32, model by model")
        ups = speedups(self.everything)
        if not ups:
            return self._skip(chart, "no model was measured both in eager fp32 and in another setup at one batch size "
                                     "(measure several with `dnnbench run --backend eager,onnxruntime --precision "
                                     "fp32,int8`)")
        sizes = sorted({u.batch_size for u in ups})
        panels = sorted({sizes[0], sizes[-1]})
        machines = len({u.setup.machine for u in ups}) > 1
        name = (lambda s: f"{s.runtime()} on {s.machine}") if machines else (lambda s: s.runtime())
        names = sorted({name(u.setup) for u in ups})
        colors = {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(names)}
        models = sorted({u.model for u in ups}, reverse=True)
        height = 0.8 / len(names)
        fig, axes = plt.subplots(1, len(panels), figsize=(7.5, 0.3 * len(models) * len(names) + 2.2), sharey=True,
                                 squeeze=False)
        for ax, batch in zip(axes[0], panels, strict=True):
            here = [u for u in ups if u.batch_size == batch]
            ys = [models.index(u.model) + (names.index(name(u.setup)) - (len(names) - 1) / 2) * height for u in here]
            for u, y in zip(here, ys, strict=True):
                r = u.ratio
                err = [[r.value - r.low], [r.high - r.value]] if r.high < float("inf") and r.low > 0 else None
                # from 1 (as fast as eager fp32) to the speed-up: a slower setup's bar points left
                ax.barh(y, r.value - 1, height=height * 0.9, left=1, color=colors[name(u.setup)],
                        hatch="////" if u.wrong else None, edgecolor="k" if u.wrong else "none", linewidth=0.5)
                if err:
                    ax.errorbar(r.value, y, xerr=err, fmt="none", ecolor="k", elinewidth=0.7, capsize=1.5)
            self._scatter(ax, chart, [u.ratio.value for u in here], ys,
                          [{"model": u.model, "setup": u.setup.label(machine=machines), "batch": u.batch_size,
                            "speed-up": f"{u.ratio.value:.2f}x (95% interval {u.ratio.low:.2f}x to {u.ratio.high:.2f}x)",
                            **({"wrong": u.wrong} if u.wrong else {})} for u in here],
                          cells=[u.cell for u in here], s=6, c="k", zorder=3)
            ax.axvline(1, color="k", lw=0.8)
            ax.set_xscale("log")
            ax.set_xlabel(f"speed-up over eager fp32 at batch {batch} (x)")
            ax.set_yticks(range(len(models)), models)
            for t in ax.get_yticklabels():
                t.set_parse_math(False)
        handles = [plt.Rectangle((0, 0), 1, 1, color=colors[n]) for n in names]
        labels = list(names)
        if any(u.wrong for u in ups):
            handles.append(plt.Rectangle((0, 0), 1, 1, facecolor="white", hatch="////", edgecolor="k", linewidth=0.5))
            labels.append("wrong results")
        legend = fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=min(4, len(labels)), frameon=False)
        rows = math.ceil(len(labels) / min(4, len(labels)))
        fig.tight_layout(rect=(0, (0.2 * rows + 0.1) / fig.get_figheight(), 1, 1))  # room for the legend below
        fig._dnnbench_laid_out = True
        for t in legend.get_texts():
            t.set_parse_math(False)
        words = []
        for batch in panels:
            right = [u for u in ups if u.batch_size == batch and not u.wrong]
            if not right:
                continue
            top = max(right, key=lambda u: u.ratio.value)
            slower = [u for u in right if u.verdict == "slower"]
            words.append(f"At batch {batch}, {name(top.setup)} runs {top.model} {top.ratio.value:.2g}x as fast as eager "
                         f"fp32 (95% interval {top.ratio.low:.2g}x to {top.ratio.high:.2g}x), the largest gain; "
                         f"{len(slower)} of {len(right)} model-setup pairs are slower than eager fp32"
                         + (f" ({', '.join(sorted({name(u.setup) for u in slower}))})" if slower else "") + ".")
        wrong = sorted({f"{u.model} in {name(u.setup)}" for u in ups if u.wrong})
        if wrong:
            words.append(f"Hatched, computing wrong results against eager fp32: {', '.join(wrong)}.")
        chart.finding = " ".join(words)
        self._save(chart, fig)

    def artifacts(self):
        """What each setup ships (its files' bytes) against its latency, model by model, at each one's
        smallest batch size measured."""
        chart = Chart("artifacts", "What each setup ships against how fast it runs: artifact size and latency")
        shown = [d for d in deployments(self.everything) if d.cell is not None and d.artifact_bytes]
        runtimes = sorted({d.setup.runtime() for d in shown})
        if len(runtimes) < 2:
            return self._skip(chart, "fewer than two setups were measured with the size of their files (measure "
                                     "several with `dnnbench run --backend eager,onnxruntime,executorch,litert "
                                     "--precision fp32,int8`)")
        machines = len({d.setup.machine for d in shown}) > 1
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        for i, runtime in enumerate(runtimes):
            here = [d for d in shown if d.setup.runtime() == runtime]
            self._scatter(ax, chart, [d.artifact_bytes / MIB for d in here],
                          [d.cell["latency_median_s"] * 1e3 for d in here],
                          [{"model": d.model, "setup": d.setup.label(machine=machines), "batch": d.batch_size,
                            "artifact": f"{d.artifact_bytes / MIB:.3g} MiB",
                            "latency": _ms(d.cell["latency_median_s"]),
                            **({"restart": f"{d.restart_cold_s:.3g} s cold, {d.restart_warm_s:.3g} s warm"}
                               if d.restart_cold_s is not None and d.restart_warm_s is not None else {}),
                            **({"wrong": d.wrong} if d.wrong else {})} for d in here],
                          cells=[d.cell for d in here], s=22, color=plt.cm.tab10(i % 10), label=runtime, zorder=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("artifact: the files a deployment ships (MiB, log scale)")
        ax.set_ylabel("latency at the smallest batch size (ms, log scale)")
        legend = ax.legend(fontsize=7, loc="best")
        for t in legend.get_texts():
            t.set_parse_math(False)
        words = []
        by_runtime = {r: sorted(d.artifact_bytes for d in shown if d.setup.runtime() == r) for r in runtimes}
        smallest = min(runtimes, key=lambda r: by_runtime[r][len(by_runtime[r]) // 2])
        words.append(f"Smallest files: {smallest} (median {by_runtime[smallest][len(by_runtime[smallest]) // 2] / MIB:.3g} "
                     f"MiB over {len(by_runtime[smallest])} models).")
        fastest: dict[str, int] = {}
        for model in sorted({(d.model, d.input_size, d.setup.machine) for d in shown}):
            mine = [d for d in shown if (d.model, d.input_size, d.setup.machine) == model and not d.wrong]
            if len(mine) >= 2:  # a model measured in one setup has no choice to tell
                best = min(mine, key=lambda d: d.cell["latency_median_s"] / d.batch_size)
                fastest[best.setup.runtime()] = fastest.get(best.setup.runtime(), 0) + 1
        if fastest:
            words.append(f"Fastest of the {sum(fastest.values())} models measured in several setups: " + ", ".join(
                f"{r} for {n}" for r, n in sorted(fastest.items(), key=lambda t: -t[1])) + ".")
        chart.finding = " ".join(words)
        self._save(chart, fig)

    def predicted_vs_measured(self):
        b = self.batch
        chart = Chart("predicted_vs_measured", f"Predicted against measured time per image at batch size {b}, each "
                                               "model predicted without itself")
        p = self.predicted
        if not p:
            return self._skip(chart, f"prediction needs at least 4 models measured at batch size {b}")
        cal = p["calibration"]
        fig, ax = plt.subplots(figsize=(7.5, 5))
        xs = [cell["latency_median_s"] / b * 1e3 for _, cell, _ in p["measured"]]
        ys = [pred / b * 1e3 for _, _, pred in p["measured"]]
        infos = [self._info(m, measured=_ms(cell["latency_median_s"] / b), predicted=_ms(pred / b),
                            error=f"{(pred - cell['latency_median_s']) / cell['latency_median_s']:+.0%}")
                 for m, cell, pred in p["measured"]]
        self._scatter(ax, chart, xs, ys, infos, cells=[c for _, c, _ in p["measured"]], s=24, zorder=3)
        for (m, _, _), x, y in zip(p["measured"], xs, ys, strict=True):
            _label(ax, x, y, m.model)
        lo, hi = min(xs + ys) / 1.5, max(xs + ys) * 1.5
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="predicted = measured")
        ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="0.85", label="±10%")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"measured time per image at batch {b} (ms)")
        ax.set_ylabel("predicted, leave-one-out (ms)")
        ax.legend(fontsize=7)
        errors = list(cal.loo_errors.values())
        within = sum(abs(e) <= 0.1 for e in errors)
        chart.finding = (f"Predicted from {PREDICT_METHODS[p['method']]}, each measured model from the other {cal.n - 1}: "
                         f"{within} of {cal.n} within ±10%, median error ±{cal.median_abs_error:.0%}, worst "
                         f"±{max(abs(e) for e in errors):.0%}.")
        if p.get("busy_kernels"):
            chart.finding += (f" {p['busy_kernels']} kernel times taken while other processes used the machine were "
                              "left out (estimated from the other kernels); run `dnnbench predict` again on a quiet "
                              "machine to time them again.")
        if p.get("stale_kernels"):
            chart.finding += (f" {p['stale_kernels']} kernel times an earlier dnnbench took in another way were left "
                              "out (estimated from the other kernels); run `dnnbench predict` again to time them "
                              "as this one does.")
        self._save(chart, fig)

    def predicted_ball_chart(self):
        b = self.batch
        chart = Chart("predicted_ball_chart", f"Top-1 accuracy versus predicted time per image at batch size {b}, "
                                              "measured models filled; blob area proportional to parameters")
        p = self.predicted
        if not p or not p["predicted"]:
            return self._skip(chart, "no model was predicted beyond the measured ones: `dnnbench predict --zoo NAME` "
                                     f"(or --all) at --batch-size {b} adds them")
        shown = [(name, pred, found, p["top1"].get((name, size))) for name, size, pred, found in p["predicted"]]
        shown = [s for s in shown if s[3] is not None]
        measured = [(m, cell) for m, cell, _ in p["measured"] if m.top1 is not None and m.params]
        if not shown:
            return self._skip(chart, "no predicted model has a published top-1 accuracy")
        fig, ax = plt.subplots(figsize=(7.5, 5))
        biggest = max([f["params"] for _, _, f, _ in shown] + [m.params for m, _ in measured])
        xs = [pred.latency_s / b * 1e3 for _, pred, _, _ in shown]
        self._scatter(ax, chart, xs, [t for *_, t in shown],
                      [{"model": n, "top1": f"{t:.2f} %", "predicted": _ms(pred.latency_s / b),
                        "interval": f"{_ms(pred.low_s / b)} to {_ms(pred.high_s / b)}",
                        **({"extrapolates": "; ".join(pred.extrapolations)} if pred.extrapolations else {})}
                       for n, pred, _, t in shown],
                      s=[2000 * f["params"] / biggest + 10 for _, _, f, _ in shown], facecolors="none",
                      edgecolors=["red" if pred.extrapolates else "#4c72b0" for _, pred, _, _ in shown], linewidths=0.8)
        if measured:
            self._scatter(ax, chart, [c["latency_median_s"] / b * 1e3 for _, c in measured], [m.top1 for m, _ in measured],
                          [self._info(m, top1=f"{m.top1:.2f} %", measured=_ms(c["latency_median_s"] / b))
                           for m, c in measured], cells=[c for _, c in measured],
                          s=[2000 * m.params / biggest + 10 for m, _ in measured], alpha=0.6, c="#dd8452",
                          edgecolors="k", linewidths=0.5)
        ax.set_xscale("log")
        ax.set_xlabel(f"time per image at batch {b} (ms): predicted (hollow; red: extrapolated), measured (filled)")
        ax.set_ylabel("top-1 accuracy (%)")
        best = max(shown, key=lambda s: s[3])
        fastest = min(shown, key=lambda s: s[1].latency_s)
        chart.finding = (f"{len(shown)} models predicted beside {len(measured)} measured. The most accurate predicted, "
                         f"{best[0]} ({best[3]:.2f} %), would take {_ms(best[1].latency_s / b)} per image; the fastest, "
                         f"{fastest[0]}, {_ms(fastest[1].latency_s / b)} ({fastest[3]:.2f} %). "
                         f"{sum(s[1].extrapolates for s in shown)} predictions extrapolate beyond the calibrated models.")
        self._save(chart, fig)




    # -- machines compared -------------------------------------------------------------------------

    _ONE_MACHINE = ("one machine in the database: measure others with `dnnbench run --cluster ADDRESS`, or run "
                    "on each and `dnnbench merge` their databases")

    def _machine_setups(self):
        setup = self.models[0].setup if self.models else None
        return setup, (machines_.machine_setups(self.everything, setup) if setup else {})

    def machines_side_by_side(self):
        setup, setups = self._machine_setups()
        chart = Chart("machines", f"Each model on every machine: latency at batch {self.batch} and peak memory "
                                  f"at batch 1 ({setup.runtime() if setup else ''})")
        if len(setups) < 2:
            return self._skip(chart, self._ONE_MACHINE)
        names = sorted(setups, key=lambda n: (n != setup.machine, n))
        by = {(m.model, m.setup): m for m in self.everything}
        models = sorted({m.model for m in self.everything if m.setup in setups.values()}, reverse=True)
        colors = {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(names)}
        height = 0.8 / len(names)
        fig, axes = plt.subplots(1, 2, figsize=(7.5, 0.28 * len(models) * len(names) + 2.2), sharey=True)
        for ax, (what, batch, key, scale, label) in zip(axes, [
                ("latency", self.batch, "latency_median_s", 1e3, f"latency of one batch of {self.batch} (ms)"),
                ("memory", 1, "mem_peak_bytes", 1 / MIB, "peak memory at batch 1 (MiB)")], strict=True):
            for j, name in enumerate(names):
                ys, xs, infos, cells, errs = [], [], [], [], []
                for i, model in enumerate(models):
                    m = by.get((model, setups[name]))
                    cell = m.ok.get(batch) if m else None
                    value = (memory_bytes(cell) if what == "memory" else cell.get(key)) if cell else None
                    if not value:
                        continue
                    y = i + (j - (len(names) - 1) / 2) * height
                    ys.append(y)
                    xs.append(value * scale)
                    cells.append(cell if what == "latency" else None)
                    infos.append({"model": model, "machine": name, what: _ms(value) if what == "latency" else _mib(value)})
                    low, high = (cell.get("latency_ci_low_s"), cell.get("latency_ci_high_s")) if what == "latency" \
                        else (None, None)
                    errs.append((value - low, high - value) if low and high else (0, 0))
                ax.barh(ys, xs, height=height * 0.9, color=colors[name], label=short_name(name))
                if what == "latency" and ys:
                    ax.errorbar(xs, ys, xerr=[[e[0] * scale for e in errs], [e[1] * scale for e in errs]], fmt="none",
                                ecolor="k", elinewidth=0.6, capsize=1.2)
                self._scatter(ax, chart, xs, ys, infos, cells=cells, s=5, c="k", zorder=3)
            if what == "latency":  # latencies span decades; memory rarely does, and reads better linear
                ax.set_xscale("log")
            ax.set_xlabel(label)
            ax.set_yticks(range(len(models)), models)
            for t in ax.get_yticklabels():
                t.set_parse_math(False)
        legend = axes[0].legend(fontsize=7, loc="best")
        for t in legend.get_texts():
            t.set_parse_math(False)
        found = machines_.summary(machines_.ratios(self.everything, setup, self.batch))
        words = [f"{len(names)} machines measured in {setup.runtime()}, each with its own device and threads: "
                 + "; ".join(setups[n].label(machine=True) for n in names) + "."]
        for name, f in found.items():
            words.append(f"On {name}, {f['models']} models take {f['low']:.2g}x to {f['high']:.2g}x the time they take "
                         f"on {setup.machine} at batch {self.batch} (median {f['median']:.2g}x).")
        chart.finding = " ".join(words)
        self._save(chart, fig)

    def machine_ratios(self):
        setup, setups = self._machine_setups()
        chart = Chart("machine_ratio", f"Speed of each machine relative to {setup.machine if setup else 'one'}, "
                                       f"model by model, against operations (batch {self.batch})")
        if len(setups) < 2:
            return self._skip(chart, self._ONE_MACHINE)
        found = [r for r in machines_.ratios(self.everything, setup, self.batch) if r.macs]
        if not found:
            return self._skip(chart, f"no model with known operations was measured at batch {self.batch} both on "
                                     f"{setup.machine} and on another machine")
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        others = sorted({r.machine for r in found})
        for i, name in enumerate(others):
            mine = [r for r in found if r.machine == name]
            xs = [r.macs / 1e9 for r in mine]
            ys = [r.ratio.value for r in mine]
            color = plt.get_cmap("tab10")((i + 1) % 10)
            bounded = [(x, r) for x, r in zip(xs, mine, strict=True) if r.ratio.high < float("inf") and r.ratio.low > 0]
            if bounded:
                ax.errorbar([x for x, _ in bounded], [r.ratio.value for _, r in bounded],
                            yerr=[[r.ratio.value - r.ratio.low for _, r in bounded],
                                  [r.ratio.high - r.ratio.value for _, r in bounded]],
                            fmt="none", ecolor=color, elinewidth=0.7, alpha=0.7)
            self._scatter(ax, chart, xs, ys,
                          [{"model": r.model, "machine": f"{name} over {setup.machine}",
                            "time ratio": f"{r.ratio.value:.2f}x (95% interval {r.ratio.low:.2f}x to {r.ratio.high:.2f}x)",
                            "G-MACs": format_significant(r.macs / 1e9)} for r in mine],
                          cells=[r.cell for r in mine], s=22, color=color, label=short_name(name), zorder=3)
            for x, r in zip(xs, mine, strict=True):
                _label(ax, x, r.ratio.value, r.model)
        ax.axhline(1, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("G-MACs per image")
        ax.set_ylabel(f"time on the machine over time on {setup.machine} (x)")
        legend = ax.legend(fontsize=7, loc="best")
        for t in legend.get_texts():
            t.set_parse_math(False)
        lines = machines_.time_lines(self.everything, setups, self.batch)
        words = []
        for name, f in machines_.summary(found).items():
            words.append(f"{name} over {setup.machine}: {f['low']:.2g}x to {f['high']:.2g}x over {f['models']} models "
                         f"(median {f['median']:.2g}x; {f['slower']} slower, {f['faster']} faster, {f['tie']} within "
                         "the noise): not one number.")
        if len(lines) >= 2:
            words.append("Time per image against operations, each machine its own line: " + "; ".join(
                f"{name} {lines[name].slope * 1e12:.3g} ms per G-MAC (R² {lines[name].r2:.2f})" for name in sorted(lines))
                + ".")
        chart.finding = " ".join(words)
        self._save(chart, fig)


def best_table(models, batch: int, memory_limits, speed_limits, top: int = 5):
    """Bianco et al.'s table for this machine: for each memory limit and speed limit, the `top` most
    accurate models whose figures at ``batch`` satisfy both (interpolated where not measured)."""
    rows = []
    for mem in memory_limits:
        for fps in speed_limits:
            fits_ = []
            for m in models:
                at = figures_at(m, batch)
                if m.top1 is None or at is None or at.memory_bytes is None:
                    continue
                if at.memory_bytes <= mem and at.images_per_s >= fps:
                    fits_.append((m.top1, m.model))
            fits_.sort(reverse=True)
            rows.append({"max_memory_bytes": mem, "min_images_per_s": fps,
                         "models": [f"{name} ({t:.2f} %)" for t, name in fits_[:top]]})
    return rows


def nice_limits(values, count: int = 3, steps=(1, 2, 2.5, 5)) -> list[float]:
    """``count`` round numbers spread over ``values`` (quantiles rounded up to 1, 2, 2.5 or 5 x 10^k)."""
    values = sorted(v for v in values if v and v > 0)
    if not values:
        return []
    out = []
    for q in [(i + 1) / count for i in range(count)]:
        v = values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]
        exp = 10 ** math.floor(math.log10(v))
        nice = next(s * exp for s in (*steps, 10) if s * exp >= v)
        if nice not in out:
            out.append(nice)
    return out
