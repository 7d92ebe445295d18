"""`dnnbench compare --report DIR`: the comparison as a page: one figure (each cell's ratio with its
interval against the margin) and the table, also as CSV."""

from __future__ import annotations

import csv
import math
import shutil
import tempfile
from pathlib import Path

from ..text import short_name, spreadsheet_cell
from . import html as page_html
from .build import _check_no_database_overwritten, _make_folder, _publish
from .figures import Chart, plt

COLOURS = {"slower": "#c0392b", "slower within the margin": "#e67e22", "faster": "#2471a3", "same": "#27ae60",
           "undecided": "#7f8c8d"}
FILES = ("compare.html", "compare.csv", "compare.png", "compare.svg")
COLUMNS = ("model", "input_size", "batch_size", "base_setup", "new_setup", "base_median_s", "new_median_s", "ratio",
           "low", "high", "paired", "rounds", "verdict", "disturbed")


def build_compare_report(comparison, out, base, new, force: bool = False) -> Path:
    """Write compare.html, its figure (PNG, SVG) and compare.csv into the folder ``out``: written apart,
    then moved in whole (a failed write leaves ``out`` as it was)."""
    out = Path(out)
    _make_folder(out)
    for db in (base, new):
        if db is not None:
            _check_no_database_overwritten(out, db, force)
    staging = Path(tempfile.mkdtemp(prefix=".report-partial-", dir=out))
    try:
        chart = _draw(comparison, staging)
        _table_csv(comparison, staging / "compare.csv")
        rows = [[_cell_name(r), r["batch_size"], r["base_setup"], r["new_setup"], _num(r["ratio"]), _num(r["low"]),
                 _num(r["high"]), "paired" if r["paired"] else "rounds", r["verdict"]] for r in comparison]
        sections = [("Every cell", page_html.table(
            ["model", "batch", "base", "new", "new/base", "low", "high", "interval", "verdict"], rows, "compare"))]
        intro = [line for line in str(comparison).splitlines()[-3:]]
        meta = f"base: {base}" + (f"; new: {new}" if new else "; new: the same database")
        (staging / "compare.html").write_text(page_html.page("dnnbench compare", intro, [chart], sections, meta),
                                              encoding="utf-8")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _publish(staging, out, set(FILES))
    return out / "compare.html"


def _cell_name(r: dict) -> str:
    return short_name(r.get("base_model", r["model"])) + (f" -> {short_name(r['new_model'])}" if "new_model" in r else "")


def _num(value) -> str:
    return "-" if value is None else ("inf" if value == math.inf else f"{value:.4f}")


def _draw(comparison, out: Path) -> Chart:
    rows = [r for r in comparison if r["ratio"] is not None]
    chart = Chart("compare", "New over base: each cell's latency ratio and its 95% interval")
    if not rows:
        chart.reason = "no cell was measured on both sides"
        return chart
    margin = comparison.margin
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.28 * len(rows)))
    ax.axvspan(1 / (1 + margin), 1 + margin, color="#27ae60", alpha=0.12, label=f"within ±{100 * margin:g}%")
    ax.axvline(1.0, color="black", lw=0.8)
    finite_high = [r["high"] for r in rows if r["high"] != math.inf]
    right = max([*finite_high, *(r["ratio"] for r in rows), 1 + 2 * margin]) * 1.05
    left = min([*(r["low"] for r in rows if r["low"] > 0), *(r["ratio"] for r in rows), 1 / (1 + 2 * margin)]) / 1.05
    for i, r in enumerate(rows):
        high = r["high"] if r["high"] != math.inf else right
        colour = COLOURS.get(r["verdict"], "#7f8c8d")
        ax.plot([max(r["low"], left), high], [i, i], color=colour, lw=2)
        ax.plot([r["ratio"]], [i], "o", color=colour, ms=5, markeredgecolor="red" if r["disturbed"] else colour)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{_cell_name(r)}, batch {r['batch_size']}" for r in rows])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(left, right)
    ax.set_xlabel("new latency / base latency (log scale; above 1: slower)")
    for verdict, colour in COLOURS.items():
        if any(r["verdict"] == verdict for r in rows):
            ax.plot([], [], "o-", color=colour, label=verdict)
    ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    counts = {v: sum(1 for r in rows if r["verdict"] == v) for v in COLOURS if any(r["verdict"] == v for r in rows)}
    chart.finding = (f"{len(rows)} cells at a {100 * margin:g}% margin: "
                     + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".")
    for ext in ("png", "svg"):
        path = out / f"compare.{ext}"
        with plt.rc_context({"svg.hashsalt": "compare"}):
            fig.savefig(path, metadata={"Date": None} if ext == "svg" else None)
        chart.files[ext] = path
    plt.close(fig)
    return chart


def _table_csv(comparison, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for r in comparison:
            writer.writerow([spreadsheet_cell(r.get(c)) for c in COLUMNS])
