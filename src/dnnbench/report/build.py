"""`dnnbench report`: reads a database, draws every figure, writes the tables as CSV and the page."""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from ..analysis.data import load, peak_flops
from ..analysis.setups import best_setups, deployments, not_converted, speedups
from ..errors import UserError
from ..export import is_sqlite, same_file
from ..setup import memory_bytes, select
from ..text import spreadsheet_cell
from ..units import format_bytes, format_seconds, format_significant
from . import html as page_html
from .figures import Drawer, best_table, cells_by_model, nice_limits


def _choose_setup(models, words: str | None = None):
    """The setup the figures show: the one ``words`` names (``--setup``), else the one with the most
    successful cells (eager fp32 first among equals). Also returns every setup's count of such cells."""
    counts = Counter()
    for m in models:
        counts[m.setup] += len(m.ok)
    measured = sorted((s for s in counts if counts[s]), key=lambda s: (-counts[s], s != s.baseline(), s.key()))
    if words is not None:
        named = select(measured, words)
        labels = "; ".join(s.label(machine=True) for s in measured)
        if not named:
            raise UserError(f"--setup {words!r} names none of the setups measured: {labels} (name one by its words, "
                            "e.g. --setup onnxruntime,int8)")
        if len(named) > 1:
            raise UserError(f"--setup {words!r} names {len(named)} setups: "
                            f"{'; '.join(s.label(machine=True) for s in named)} (add a word to name one, e.g. its "
                            "precision or machine)")
        return named[0], counts
    return (measured[0] if measured else None), counts


def _choose_batch(models, wanted: int | None) -> int:
    measured = sorted({b for m in models for b in m.ok})
    if wanted is not None:
        if wanted not in measured:
            raise UserError(f"no model was measured at batch size {wanted}; measured: "
                            f"{', '.join(map(str, measured))} (pick one with --batch-size)")
        return wanted
    return min(measured, key=lambda b: (abs(b - 16), -b))  # the papers' batch of 16, or the nearest


def _ratio(r) -> tuple[str, float] | None:
    """A speed-up as shown (``3.1x (2.9x to 3.3x)``) with its sort key."""
    if r is None:
        return None
    if r.high == float("inf") or r.low <= 0:
        return (f"{r.value:.2f}x (no interval)", r.value)
    return (f"{r.value:.2f}x ({r.low:.2f}x to {r.high:.2f}x)", r.value)


def _setups_section(everything, out: Path) -> str:
    """The table of each model's fastest setup per batch size, setups.csv with every setup's speed-up
    over eager fp32 and its correctness, the setups that compute wrong results, and what is not measured."""
    machines = len({m.setup.machine for m in everything}) > 1
    label = (lambda s: s.label(machine=True)) if machines else (lambda s: s.label())
    rows = []
    for b in best_setups(everything):
        latency = b.cell["latency_median_s"]
        runner = None
        if b.runner_up is not None:
            margin = f"{b.margin.value:.2f}x slower" + ("" if b.clear else ", within the noise: a tie")
            runner = f"{b.runner_up.runtime()} ({margin})"
        rows.append([b.model, b.batch_size, label(b.setup), (format_seconds(latency), latency),
                     b.cell.get("ci_rel") and round(100 * b.cell["ci_rel"], 1), _ratio(b.speedup) or "-",
                     runner, b.candidates])
    head = ["model", "batch", "fastest setup", "latency", "95% CI (±%)", "speed-up over eager fp32 (95% interval)",
            "runner-up (its time over the fastest's)", "setups with right results"]
    ups = speedups(everything)
    _write_csv(out / "setups.csv",
               ["model", "input size", "machine", "device", "backend", "precision", "threads", "layout", "batch",
                "latency (s)", "speed-up over eager fp32 (x)", "95% low (x)", "95% high (x)", "paired rounds",
                "top-1 agreement with eager fp32", "largest relative error of the logits", "preparation (s)",
                "wrong results"],
               [[u.model, u.input_size, *u.setup.key(), u.batch_size, u.cell["latency_median_s"],
                 round(u.ratio.value, 4), round(u.ratio.low, 4), round(u.ratio.high, 4) if u.ratio.high < 1e300 else None,
                 u.ratio.rounds if u.ratio.paired else 0, u.cell.get("top1_agreement"), u.cell.get("max_rel_error"),
                 u.cell.get("cold_prepare_s"), u.wrong] for u in ups])
    parts = [page_html.table(head, rows, "setups")]
    wrong = sorted({(u.model, label(u.setup), u.wrong) for u in ups if u.wrong})
    if wrong:
        parts.append("<p class='missing'>Never the fastest nor recommended, computing wrong results against eager "
                     f"fp32: {page_html.esc('; '.join(f'{m} in {s} ({why})' for m, s, why in wrong))}.</p>")
    unmeasured = sorted({f"{m.model} ({m.setup.runtime()})" for m in everything if m.accuracy == "none"})
    if unmeasured:
        parts.append("<p>No accuracy for: " + page_html.esc(", ".join(unmeasured)) + ". No publication gives the "
                     "accuracy of a bf16, fp16 or int8 model, and on random weights and inputs its classes may differ "
                     "from fp32's without being wrong: measure it on labelled images with <code>dnnbench eval "
                     "--backend B --precision P</code>.</p>")
    evaluated = [m for m in everything if m.accuracy == "measured"]
    if evaluated:
        parts.append("<p>Top-1 measured by <code>dnnbench eval</code> (published fp32 figure beside it): " + page_html.esc(
            "; ".join(f"{m.model} in {m.setup.runtime()}: {m.top1:.2f}%"
                      + (f" (published {m.top1_published:.2f}%, {m.top1 - m.top1_published:+.2f})"
                         if m.top1_published is not None else "") for m in evaluated)) + ".</p>")
    parts.append("<p class='meta'>Every setup's speed-up and correctness: setups.csv.</p>")
    parts.append(_deployments_table(everything, label, out))
    return "".join(parts)


def _deployments_table(everything, label, out: Path) -> str:
    """Each model in each setup as a deployment sees it (its files' bytes, preparation, restarts from
    those files, latency), deployments.csv, and what did not convert or run, with the reason."""
    shown = deployments(everything)
    rows = []
    for d in shown:
        latency = d.cell["latency_median_s"] if d.cell else None
        restart = (f"{d.restart_cold_s:.3g} s / {d.restart_warm_s:.3g} s"
                   if d.restart_cold_s is not None and d.restart_warm_s is not None else d.restart_reason or "-")
        rows.append([d.model, label(d.setup), d.batch_size,
                     (format_seconds(latency), latency) if latency else ("not timed here", float("inf")),
                     (format_bytes(d.artifact_bytes), d.artifact_bytes) if d.artifact_bytes else "-",
                     (f"{d.prepare_s:.3g} s", d.prepare_s) if d.prepare_s else "-", restart,
                     d.wrong or ("converted only: " + d.untimed if d.untimed else "")])
    _write_csv(out / "deployments.csv",
               ["model", "input size", "machine", "device", "backend", "precision", "threads", "layout", "batch",
                "latency (s)", "artifact (bytes)", "preparation (s)", "restart, caches cold (s)",
                "restart, caches warm (s)", "restart not measured because", "not timed because", "wrong results"],
               [[d.model, d.input_size, *d.setup.key(), d.batch_size, d.cell and d.cell["latency_median_s"],
                 d.artifact_bytes, d.prepare_s, d.restart_cold_s, d.restart_warm_s, d.restart_reason, d.untimed,
                 d.wrong] for d in shown])
    head = ["model", "setup", "batch", "latency", "artifact (files shipped)", "preparation",
            "restart from the files: caches cold / warm", "note"]
    parts = ["<h3>Deployments: what each setup ships, how long it takes to start, how fast it runs</h3>",
             page_html.table(head, rows, "deployments")] if rows else []
    failed = not_converted(everything)
    several = len({m.setup.machine for m in everything}) > 1
    on = (lambda s: f" on {s.machine}") if several else (lambda s: "")
    if failed:
        parts.append("<p class='missing'>Did not convert or run: " + page_html.esc("; ".join(
            f"{f.model} in {f.setup.runtime()}{on(f.setup)} ({f.status}: {f.why})" for f in failed)) + ".</p>")
    if rows:
        parts.append("<p class='meta'>Restarts: the setup started from its files alone in a new process, once with "
                     "the runtime's caches empty and once after (one start each: no interval). Every row: "
                     "deployments.csv.</p>")
    return "".join(parts)


def _machines_section(everything, setup, batch: int, out: Path, memory_limits, speed_limits) -> str:
    """Every model on every machine in ``setup``'s runtime (latency, memory, time over ``setup``'s machine),
    machines.csv, and the best models under each limit per machine."""
    from ..analysis import machines as machines_

    setups = machines_.machine_setups(everything, setup)
    if len(setups) < 2:
        return ("<p>One machine measured. Measure others with <code>dnnbench run --cluster ADDRESS</code>, or run "
                "on each and <code>dnnbench merge A.db B.db --into all.db</code>.</p>")
    names = sorted(setups, key=lambda n: (n != setup.machine, n))
    ratio = {(r.model, r.input_size, r.machine): r.ratio for r in machines_.ratios(everything, setup, batch)}
    rows, csv_rows = [], []
    for m in sorted((m for m in everything if m.setup in setups.values()),
                    key=lambda m: (m.model, names.index(m.setup.machine))):
        cell, first = m.ok.get(batch), m.ok.get(1)
        memory = memory_bytes(first) if first else None
        r = ratio.get((m.model, m.input_size, m.setup.machine))
        shown = _ratio(r) if r else ("1 (reference)", 1.0) if m.setup.machine == setup.machine and cell else "-"
        rows.append([m.model, m.setup.label(machine=True),
                     (format_seconds(cell["latency_median_s"]), cell["latency_median_s"]) if cell else "-",
                     cell.get("ci_rel") and round(100 * cell["ci_rel"], 1) if cell else None,
                     (format_bytes(memory), memory) if memory else "-", shown])
        csv_rows.append([m.model, m.input_size, *m.setup.key(), batch, cell and cell["latency_median_s"],
                         cell and cell.get("latency_ci_low_s"), cell and cell.get("latency_ci_high_s"), memory,
                         r and round(r.value, 4), r and round(r.low, 4),
                         r and (round(r.high, 4) if r.high < 1e300 else None)])
    _write_csv(out / "machines.csv",
               ["model", "input size", "machine", "device", "backend", "precision", "threads", "layout", "batch",
                "latency (s)", "95% low (s)", "95% high (s)", "peak memory at batch 1 (bytes)",
                f"time over {setup.machine} (x)", "95% low (x)", "95% high (x)"], csv_rows)
    parts = [page_html.table(["model", "machine and setup", f"latency at batch {batch}", "95% CI (±%)",
                              "peak memory at batch 1", f"time over {setup.machine} (95% interval)"], rows, "machines")]
    if memory_limits and speed_limits:
        per = {n: best_table([m for m in everything if m.setup == setups[n]], 1, memory_limits, speed_limits)
               for n in names}
        best_rows = [[f"{row['max_memory_bytes'] / _MIB:,.0f}", f"{row['min_images_per_s']:g}",
                      *("; ".join(per[n][i]["models"]) or "none" for n in names)]
                     for i, row in enumerate(per[names[0]])]
        parts.append("<h3>The most accurate models under each limit, per machine (batch size 1)</h3>")
        parts.append(page_html.table(["memory ≤ (MiB)", "images/s ≥", *names], best_rows, "best-per-machine"))
    parts.append("<p class='meta'>Every model on every machine, with its time over the reference machine's: "
                 "machines.csv. Two machines' cells were never measured in the same rounds: the ratio's interval "
                 "comes from the two medians' intervals.</p>")
    return "".join(parts)


# The papers count operations differently from each other and from this report; their figures are
# plots (Canziani) or untranscribed tables (Bianco), so no per-model comparison can be drawn here.
OPERATIONS_CONVENTION = (
    "Operations here are multiply-accumulates (MACs) of one image, every convolution, linear layer, matrix "
    "product and attention counted; FLOPs = 2 x MACs. The papers count otherwise: Canziani et al. 2016 count a "
    "multiply-add as two operations and add biases, ReLUs and pooling, so their G-Ops compare with a little more "
    "than 2 x these G-MACs; Bianco et al. 2018 count the operations of the convolutions only, leaving out the fully "
    "connected layers. Compare with their figures in their units.")


def _paper_top1(m) -> float | None:
    from ..zoo.catalog import paper_accuracy

    paper = paper_accuracy(m.model, m.input_size)
    return paper.top1 if paper else None


def _predictions(store, models, setup, batch: int) -> dict | None:
    """`analysis.predictor.for_report` on what `dnnbench predict` stored (profiles, kernel times), with the
    published top-1 of each predicted model."""
    from ..analysis.predictor import for_report
    from ..backends import runtime_kernels
    from ..profiling import auto_kernels, stored_kernels, versions
    from ..zoo import get, published_accuracy

    from ..measure.busy import DISTURBED_SHARE

    profiles = store.profiles(versions(), batch)
    # as `predict` stored them, none an earlier dnnbench timed otherwise (the libraries are `predict`'s to
    # check: the report may be built where a runtime is not installed)
    stale: list[str] = []
    rows = stored_kernels(store, setup, libraries=False, left_out=stale)
    # a kernel timed while others disturbed the machine is not used: estimated from the others instead
    busy = {k for k, r in rows.items() if r["seconds"] and (r.get("contention") or 0) > DISTURBED_SHARE}
    timed = {k: r["seconds"] for k, r in rows.items() if r["seconds"] and k not in busy}
    # the runtime's own kernels, where `predict` timed them (`backends.runtime_kernels`)
    prefix = runtime_kernels.prefix(setup)
    runtime = {k: r["seconds"] for k, r in runtime_kernels.by_eager_key(rows, prefix).items()
               if r["seconds"] and prefix + k not in busy} if prefix else None
    weighs = auto_kernels(setup)
    if weighs != "eager":  # as `predict`'s auto weighs them
        timed = {}
    found = for_report(models, profiles, timed, batch, runtime, runtime_kernels.kernels)
    if found is None:
        return None
    # of the kernels this batch size's predictions would weigh, those left out: timed while others
    # disturbed the machine, or by an earlier dnnbench in another way (for_report split every profile into
    # them already: split again only where something was left out, 1 s for 1,500 runtime profiles)
    wanted = _weighed_kernels(profiles, weighs, prefix) if busy or stale else set()
    found["busy_kernels"], found["stale_kernels"] = len(busy & wanted), len(wanted.intersection(stale))
    top1 = {}
    for name, size, _, _ in found["predicted"]:
        try:
            accuracy = published_accuracy(get(name, size))
        except UserError:
            accuracy = None
        top1[(name, size)] = accuracy.top1 if accuracy else None
    return {**found, "top1": top1}


def _weighed_kernels(profiles: dict, weighs: str | None, prefix: str | None) -> set[str]:
    """The stored keys of the kernels of ``profiles`` that auto weighs (`profiling.auto_kernels`): the
    runtime's own, eager's, or none."""
    from ..backends import runtime_kernels

    if weighs == "runtime":
        return {runtime_kernels.runtime_key(k, prefix) for p in profiles.values()
                for k in runtime_kernels.kernels(p)[0]}
    return {k for p in profiles.values() for k in p["calls"]} if weighs == "eager" else set()


def _accuracy_words(models) -> list[str]:
    """Which top-1 figures were measured here, and which weights are not the paper's (Bianco et al. 2018)."""
    from ..zoo.catalog import PAPER_TOLERANCE

    words = []
    measured = [m for m in models if m.accuracy == "measured"]
    if measured:
        words.append("Top-1 measured by dnnbench eval, not published: " + "; ".join(
            f"{m.model} {m.top1:.2f}%" + (f" (published {m.top1_published:.2f}%, {m.top1 - m.top1_published:+.2f})"
                                          if m.top1_published is not None else "") for m in measured) + ".")
    other = [(m, p) for m in models if m.accuracy == "published" and m.top1 is not None
             and (p := _paper_top1(m)) is not None and abs(m.top1 - p) > PAPER_TOLERANCE]
    if other:
        words.append("Not the weights Bianco et al. 2018 measured (published top-1 here against theirs): "
                     + "; ".join(f"{m.model} {m.top1:.2f}% against {p:.2f}%" for m, p in other)
                     + ": another training of the same architecture.")
    return words


def _write_csv(path: Path, headings: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(headings)
        writer.writerows([["" if v is None else spreadsheet_cell(v) for v in row] for row in rows])


_MIB = 1024**2
REPORT_SUFFIXES = (".html", ".csv", ".png", ".svg")  # every file the report writes ends so


def _make_folder(out: Path) -> None:
    """Create ``out``; UserError where a file stands in the way. Other OS errors (permission, a
    read-only disk) reach the caller, which names them."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; the report is a folder of files: give a folder path, "
                        f"e.g. --out {out.parent / 'dnnbench-report'}")
    blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UserError(f"cannot create the report folder {out}: {blocker} is a file, not a folder; "
                        "choose another --out")
    out.mkdir(parents=True, exist_ok=True)


def _check_no_database_overwritten(out: Path, db, force: bool) -> None:
    """Refuse, unless ``force``, where a file the report may write (by its suffix) is the database
    or another SQLite database."""
    if force:
        return
    for path in sorted(out.iterdir()):
        if path.suffix in REPORT_SUFFIXES and (same_file(path, db) or is_sqlite(path)):
            raise UserError(f"{path} is an SQLite database and the report may write a file of that name: choose "
                            "another --out (or add --force to overwrite it)")


def _tables(models, everything, batch: int, predicted, out: Path) -> dict:
    """The report's tables, each also written as CSV into ``out``: models, best models under limits,
    predicted against measured, every cell."""
    def at(m, b, key):
        cell = m.ok.get(b)
        return cell.get(key) if cell else None

    model_rows = []
    for m in models:
        lat1 = at(m, 1, "latency_median_s")
        ci1 = at(m, 1, "ci_rel")
        first = next(iter(m.cells.values()), {})
        mem1 = memory_bytes(m.ok[1]) if 1 in m.ok else None
        model_rows.append([
            m.model, m.family, m.top1, m.top5, m.params and round(m.params / 1e6, 3), m.macs and round(m.macs / 1e9, 4),
            m.accuracy_density and round(m.accuracy_density, 3),
            lat1 and round(lat1 * 1e3, 3), ci1 and round(100 * ci1, 2),
            at(m, batch, "images_per_s") and round(at(m, batch, "images_per_s"), 2),
            mem1 and round(mem1 / _MIB, 1), first.get("cold_build_s") and round(first["cold_build_s"], 3),
            first.get("cold_load_s") and round(first["cold_load_s"], 3),
            first.get("cold_first_s") and round(first["cold_first_s"], 3),
            at(m, batch, "energy_per_image_j"), m.accuracy_source, m.accuracy, m.top1_published,
            _paper_top1(m)])
    model_head = ["model", "family", "top-1 (%)", "top-5 (%)", "params (M)", "G-MACs", "top-1 per M params (%)",
                  "latency at batch 1 (ms)", "95% CI at batch 1 (±%)", f"images/s at batch {batch}",
                  "peak memory at batch 1 (MiB)", "build (s)", "load weights (s)", "first pass (s)",
                  f"energy at batch {batch} (J/image)", "accuracy source", "top-1 is", "published top-1 (%)",
                  "Bianco 2018 top-1 (%)"]
    _write_csv(out / "models.csv", model_head, model_rows)

    mem_values = [memory_bytes(m.ok[1]) for m in models if 1 in m.ok]
    fps_values = [m.ok[1]["images_per_s"] for m in models if 1 in m.ok]
    memory_limits = [v * _MIB for v in nice_limits([v / _MIB for v in mem_values if v])]  # round in MiB
    speed_limits = [v for v in nice_limits(fps_values)]
    best = best_table(models, 1, memory_limits, speed_limits) if memory_limits and speed_limits else []
    best_rows = [[f"{r['max_memory_bytes'] / _MIB:,.0f}", f"{r['min_images_per_s']:g}",
                  "; ".join(r["models"]) or "none"] for r in best]
    best_head = ["memory ≤ (MiB)", "images/s ≥", "the 5 most accurate models that fit, at batch 1"]
    _write_csv(out / "best_models.csv", best_head, best_rows)

    pred_rows = [[m.model, round(cell["latency_median_s"] / batch * 1e3, 4), round(pred / batch * 1e3, 4),
                  round(100 * (pred - cell["latency_median_s"]) / cell["latency_median_s"], 1), "measured"]
                 for m, cell, pred in (predicted or {}).get("measured", [])]
    pred_rows += [[name, None, round(p.latency_s / batch * 1e3, 4), None,
                   "predicted" + (f" (extrapolates: {'; '.join(p.extrapolations)})" if p.extrapolations else "")]
                  for name, _, p, _ in (predicted or {}).get("predicted", [])]
    pred_head = ["model", f"measured time per image at batch {batch} (ms)", "predicted, leave-one-out (ms)",
                 "error (%)", "what"]
    _write_csv(out / "predicted.csv", pred_head, pred_rows)

    from ..export import EXPORT_KEYS

    cell_rows = [[c.get(k) for k in EXPORT_KEYS] for m in everything for c in m.cells.values()]
    _write_csv(out / "cells.csv", EXPORT_KEYS, cell_rows)

    return {"model_head": model_head, "model_rows": model_rows, "best_head": best_head, "best_rows": best_rows,
            "pred_head": pred_head, "pred_rows": pred_rows, "memory_limits": memory_limits,
            "speed_limits": speed_limits}


def _intro(models, charts, batch: int) -> tuple[list[str], list[dict]]:
    """The report's findings in words, and the cells measured on a busy machine."""
    intro = []
    costly = [m for m in models if m.macs]
    if costly:
        top = max(costly, key=lambda m: m.macs)
        cell = top.ok.get(batch)
        extra = (f", {format_seconds(cell['time_per_image_s'])} per image at batch {batch}" if cell else "")
        mem = top.ok.get(1, {}).get("mem_peak_bytes") if 1 in top.ok else None
        intro.append(f"{top.model} is the most expensive model: {format_significant(top.macs / 1e9)} G-MACs per "
                     f"image{extra}" + (f", {format_bytes(mem)} at batch 1" if mem else "") + ".")
    # the findings once each; which models a figure leaves out is said once, at the end
    intro += [c.finding.replace(c.omitted, "").replace(c.busy_note, "").strip()
              for c in charts if c.finding and not c.reason]
    intro += sorted({c.omitted for c in charts if c.omitted and not c.reason})
    intro += _accuracy_words(models)
    intro.append(OPERATIONS_CONVENTION)
    busy = [c for m in models for c in m.ok.values() if c.get("disturbed")]
    if busy:
        names = cells_by_model((c["model"], c["batch_size"]) for c in busy)
        intro.append(f"{len(busy)} of {sum(len(m.ok) for m in models)} cells were measured while other processes used "
                     f"the machine: {names}. Their times are likely too slow: they are ringed in red in every figure "
                     "of times, listed below, and every finding that rests on them says so. Measure them again on a "
                     "quiet machine to trust those findings.")
    return intro, busy


def _meta(store, models, setup, batch: int, others) -> str:
    """The line that says what the report shows: models, machine, setup, batch size, rounds."""
    env = (store.runs()[-1].get("environment") or {}) if store.runs() else {}
    meta = (f"{len(models)} models measured on {setup.machine} ({env.get('cpu_model') or env.get('gpu') or 'unknown'}: "
            f"{setup.label()}); batch size for single-batch figures: {batch}; database {store.path}")
    rounds = sorted({c.get("rounds") or 1 for m in models for c in m.ok.values()})
    if rounds:
        meta += (f"; each cell measured in {rounds[0]} worker process{'es' if rounds[0] > 1 else ''}" if len(rounds) == 1
                 else f"; cells measured in {rounds[0]} to {rounds[-1]} worker processes")
        meta += (", intervals widened by the spread between them" if rounds[-1] > 1 else
                 " (intervals cover the noise within one process only: `dnnbench run --rounds 3` adds the spread "
                 "between processes)")
    meta += _allocator_words(env)
    if others:
        meta += (f"; figures 1 to 13 show {setup.label(machine=True)} (choose another with --setup); other setups "
                 f"in the database: {'; '.join(o.label(machine=True) for o in others)}")
    return meta


def _allocator_words(env: dict) -> str:
    """How the last run's passes treated freed memory (`measure.memory.speed_mode`), in words: up to 3x
    on eager's times at batch 16. Nothing where the run does not say."""
    if env.get("allocator") == "kept":
        return "; passes timed with freed memory kept for the next one, as a caching allocator (jemalloc, tcmalloc) keeps it"
    if env.get("allocator") == "system":
        return "; passes timed with the system allocator, which may fault a pass's large activations in again"
    if env.get("dnnbench"):  # a run that names its dnnbench but not its allocator: before 0.2.0 recorded it
        return (f"; timed by dnnbench {env['dnnbench']}, whose passes faulted their large activations in again "
                "(eager at batch 16 up to 3x slower than 0.2.0 measures it)")
    return ""


def build_report(store, out: str | Path, batch: int | None = None, limits=None, force: bool = False,
                 setup: str | None = None) -> Path:
    """Write the report of ``store`` into the folder ``out``: report.html, each figure as PNG and SVG,
    and its tables as CSV. The figures of single models show one setup: the one ``setup`` names (words
    of its fields, as `--setup`), else the one with the most cells; the speed-up figure and the setups
    table compare them all."""
    out = Path(out)
    _make_folder(out)
    _check_no_database_overwritten(out, store.path, force)
    everything = load(store)
    if not everything:
        raise UserError(f"{store.path} holds no measurements yet: run `dnnbench run MODEL... --db {store.path}` first")
    setup, counts = _choose_setup(everything, setup)  # the words given become the setup they name
    if setup is None:
        raise UserError(f"{store.path} holds no successful measurement (every cell failed): see `dnnbench export "
                        f"--db {store.path}` for the errors")
    models = [m for m in everything if m.setup == setup]
    others = sorted((k for k in counts if k != setup), key=lambda s: tuple(map(str, s.key())))
    batch = _choose_batch(models, batch)
    peak = peak_flops(store, setup)

    predicted = _predictions(store, models, setup, batch)
    # written into a folder of its own inside ``out``, then moved in whole: a write that fails (a full
    # disk) leaves ``out`` as it was, never a new figure beside an old page
    staging = Path(tempfile.mkdtemp(prefix=".report-partial-", dir=out))
    try:
        charts = _write(store, staging, models, everything, others, setup, batch, peak, limits, predicted)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _publish(staging, out, {f"{c.key}.{ext}" for c in charts for ext in ("png", "svg")} | set(REPORT_TABLES))
    return out / "report.html"


REPORT_TABLES = ("models.csv", "best_models.csv", "predicted.csv", "cells.csv", "setups.csv", "deployments.csv",
                 "machines.csv")


def _publish(staging: Path, out: Path, names: set[str]) -> None:
    """The report written in ``staging`` moved into ``out``, replacing the previous one's files; those of
    its ``names`` (every file a report of these charts may write) that this one did not write go (a
    figure it could not draw, a table of setups no longer measured). Nothing else in ``out`` is touched."""
    written = {p.name for p in staging.iterdir()}
    stale = [p for p in out.iterdir() if p.name in names and p.name not in written and p.is_file()]
    for name in sorted(written, key=lambda n: n == "report.html"):  # the page last: it names a whole report
        os.replace(staging / name, out / name)  # a rename within one file system: needs no space
    for path in stale:
        path.unlink()
    staging.rmdir()


def _write(store, out: Path, models, everything, others, setup, batch: int, peak, limits, predicted) -> list:
    """Every file of the report, into ``out``; the charts drawn."""
    serving = [p for p in store.serving() if p["machine"] == setup.machine]
    drawer = Drawer(models, out, batch, peak, limits, everything, predicted, serving)
    charts = drawer.draw_all()

    t = _tables(models, everything, batch, predicted, out)
    intro, busy = _intro(models, charts, batch)
    meta = _meta(store, models, setup, batch, others)
    setups_html = _setups_section(everything, out) if others else \
        "<p>One setup measured: compare runtimes and precisions with `dnnbench run --backend LIST --precision LIST`.</p>"
    failed = [c for m in models for c in m.cells.values() if c["status"] != "ok"]
    sections = [
        ("Models", page_html.table(t["model_head"], [[(v, v) for v in r] for r in t["model_rows"]], "models")),
        ("Best models under memory and speed limits (at batch size 1)",
         page_html.table(t["best_head"], t["best_rows"], "best") if t["best_rows"] else
         "<p class='missing'>Not computed: no model was measured at batch size 1.</p>"),
        (f"Predicted against measured time per image (batch size {batch}"
         + (f", {predicted['method']} method)" if predicted else ")"),
         page_html.table(t["pred_head"], t["pred_rows"], "predicted") if t["pred_rows"] else
         f"<p class='missing'>Not computed: prediction needs at least 4 models measured at batch size {batch}.</p>"),
        ("Setups compared: the fastest setup of each model at each batch size", setups_html),
        (f"Machines compared ({setup.runtime()})",
         _machines_section(everything, setup, batch, out, t["memory_limits"], t["speed_limits"])),
        ("Cells measured on a busy machine", page_html.table(
            ["model", "batch", "others' share of the cores (%)", "hypervisor steal (%)",
             "other processes on the GPU", "timing attempts", "waited for quiet (s)"],
            [[c["model"], c["batch_size"], round(100 * (c.get("contention") or 0), 1),
              round(100 * (c.get("steal") or 0), 1), c.get("gpu_other_processes"), c.get("busy_attempts"),
              round(c.get("busy_wait_s") or 0, 1)]
             for c in busy], "busy") if busy else "<p>None: no other process disturbed a timed cell.</p>"),
        ("Cells that failed", page_html.table(["model", "batch", "status", "error"],
                                             [[c["model"], c["batch_size"], c["status"], c["error"]] for c in failed],
                                             "failed") if failed else "<p>None.</p>"),
    ]
    text = page_html.page("dnnbench report", intro, charts, sections, meta)
    (out / "report.html").write_text(text, encoding="utf-8")
    return charts
