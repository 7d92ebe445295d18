"""dnnbench as a library: the functions and classes a notebook or a script uses, and the one thing the
command line calls.

    import dnnbench
    dnnbench.models(zoo="mobile")                        # the zoo: name, family, library, input size
    dnnbench.inspect(["resnet50", "vit_b_16"])           # params, MACs, file size, published accuracy
    res = dnnbench.run(["resnet18"], batch_sizes=[1, 8], quick=True)   # measured on this machine
    res.cells.to_pandas()                                # one row per cell
    res.recommend(max_memory="1GB", max_latency="50ms")  # the models that meet the limits
    res.report("dnnbench-report")                        # the HTML report
    dnnbench.open("dnnbench.db")                         # the same over an existing database

Units: sizes in bytes, times in seconds, throughput in images per second, energy in joules, accuracy
in percent, unless a name says otherwise. Limits and budgets may be given as text with their unit
(``"1GB"``, ``"512MiB"``, ``"50ms"``) or as numbers in those base units. Every result prints as the
command line prints it (``print(res.recommend(...))``), and has ``to_dicts()`` and ``to_pandas()``.
Bad input raises `UserError`, whose message names the problem and the fix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import math
import re
import shutil
import sys
import tempfile
import time
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .analysis import AUTO_METHODS, AUTO_RULE, PREDICT_METHODS
from .errors import UserError
from .runner.plan import BATCH_SIZES, MAX_BATCH, RunConfig
from .setup import CELL_KEY, Setup, is_reference

__all__ = ["ModelInfo", "Predictions", "Recommendation", "Results", "RunOutcome", "Rows", "Served", "Setup", "UserError",
           "evaluate", "inspect", "merge", "models", "open", "run", "serve", "versus"]

DEFAULT_DB = "dnnbench.db"
DEFAULT_REPORT = "dnnbench-report"


# -- rows ------------------------------------------------------------------------------------------


class Rows(list):
    """A list of results, one per row (dicts, or objects with ``to_dict()``). ``to_dicts()`` gives plain
    dicts (what ``--json`` prints), ``to_pandas()`` a DataFrame with one row each, and ``str()`` the
    table the command line prints."""

    def __init__(self, items: Iterable = (), render: Callable[[list], str] | None = None,
                 columns: Sequence[str] | None = None):
        super().__init__(items)
        self._render = render
        self._columns = list(columns) if columns else None

    def to_dicts(self) -> list[dict]:
        return [dict(item) if isinstance(item, dict) else item.to_dict() for item in self]

    def to_pandas(self):
        """A pandas DataFrame, one row per item; needs pandas (``pip install 'dnnbench[pandas]'``)."""
        try:
            import pandas
        except ImportError:
            raise UserError("to_pandas() needs pandas, which is not installed: pip install 'dnnbench[pandas]' "
                            "(or use to_dicts())") from None
        return pandas.DataFrame(self.to_dicts(), columns=self._columns)

    def where(self, keep: Callable[[Any], bool]) -> Rows:
        """The rows ``keep`` keeps, shown as these are."""
        return Rows((item for item in self if keep(item)), render=self._render, columns=self._columns)

    def __str__(self) -> str:
        if self._render is not None:
            return self._render(list(self))
        return "\n".join(str(d) for d in self.to_dicts())


def _names(value, what: str) -> list:
    from .text import names_of

    return names_of(value, what)


# -- the zoo ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """One model of the zoo: its registry ``name``, ``family``, the library it comes from (``source``)
    and its native ``input_size`` in pixels (the side of a square image)."""

    name: str
    family: str
    source: str
    input_size: int

    def to_dict(self) -> dict:
        return asdict(self)


def _models_table(rows: list[ModelInfo]) -> str:
    from .text import table

    return table(["name", "family", "source", "input (px)"],
                 [[r.name, r.family, r.source, str(r.input_size)] for r in rows], right={3})


def models(zoo: str | None = None) -> Rows:
    """Every model dnnbench can build (about 1,500), or only those of the preset ``zoo``
    (``canziani2016``, ``culurciello2018``, ``bianco2018``, ``keras``, ``mobile``): `Rows` of `ModelInfo`."""
    from .zoo import all_names, get, preset

    names = preset(zoo) if zoo else all_names()
    entries = [get(n) for n in names]
    return Rows((ModelInfo(e.name, e.family, e.source, e.input_size) for e in entries), render=_models_table)


def _entries(names, zoo: str | None, input_size: int | None, weights=None) -> list:
    from .zoo.names import entries

    return entries(names, zoo, input_size, weights)


def _inspect_table(results: list) -> str:
    from .figures import FIGURES
    from .text import table

    columns = ["params", "macs", "file_size", "input_size", "top1", "top5", "accuracy_density"]
    sources: dict[str, int] = {}
    rows = []
    for r in results:
        d = r.to_dict()
        ref = ""
        if r.accuracy_source:
            ref = f"[{sources.setdefault(r.accuracy_source, len(sources) + 1)}]"
        rows.append([r.name, r.family, r.source] + [FIGURES[c].show(d[c]) for c in columns] + [ref or "none"])
    headings = ["name", "family", "library"] + [FIGURES[c].heading for c in columns] + ["accuracy source"]
    measured = [r for r in results if r.measured_top1 is not None]
    if measured:  # beside the published figure, with the difference
        headings[3 + columns.index("top5") + 1:3 + columns.index("top5") + 1] = ["measured top-1 (%)", "difference"]
        at = 3 + columns.index("top5") + 1
        for row, r in zip(rows, results, strict=True):
            row[at:at] = (["-", "-"] if r.measured_top1 is None else
                          [f"{r.measured_top1:.2f}", "-" if r.top1 is None else f"{r.measured_top1 - r.top1:+.2f}"])
    notes = [f"[{i}] {s}" for s, i in sources.items()]
    footer = ["", "MACs: multiply-accumulates of one image at the input size; FLOPs = 2 x MACs.",
              "Accuracy: ImageNet-1k val, single centre crop, as published by:", *notes]
    if any(r.accuracy_source is None for r in results):
        footer.append("none: no published accuracy for these weights in dnnbench's sources (never estimated).")
    for r in measured:
        footer.append(f"measured top-1 of {r.name}: {r.measured_source}.")
    papers = [r for r in results if r.paper_top1 is not None]
    if papers:
        from .zoo.catalog import PAPER_TOLERANCE

        others = [f"{r.name} ({r.top1:.2f} against {r.paper_top1:.2f})" for r in papers
                  if r.top1 is not None and abs(r.top1 - r.paper_top1) > PAPER_TOLERANCE]
        footer.append(f"Bianco et al. 2018 give a top-1 for {len(papers)} of these architectures; "
                      + (f"the weights measured here are another training than the paper's for: {'; '.join(others)}."
                         if others else f"the published figures here agree with theirs within {PAPER_TOLERANCE:g} "
                                        "point."))
    return table(headings, rows, right=set(range(3, 3 + len(columns) + (2 if measured else 0)))) + "\n" + \
        "\n".join(footer)


def _with_measured(results: list, db) -> list:
    """``results`` with the eager fp32 accuracy that `evaluate` stored in ``db`` (the latest of each model)."""
    import dataclasses

    from .store import Store

    with Store(db, create=False) as store:
        latest = {(a["model"], a["input_size"]): a for a in store.accuracies()
                  if is_reference(a)}
    out = []
    for r in results:
        a = latest.get((r.name, r.input_size))
        out.append(r if a is None else dataclasses.replace(
            r, measured_top1=a["top1"], measured_top5=a["top5"],
            measured_source=f"dnnbench eval on {a['images']} images of {a['data']} (weights {a['weights']}), "
                            f"95% interval {a['top1_low']:.2f} to {a['top1_high']:.2f}"))
    return out


def inspect(models: str | Sequence[str] = (), *, zoo: str | None = None, input_size: int | None = None,
            errors: str = "raise", db: str | os.PathLike | None = None, progress: bool = True) -> Rows:
    """The static figures of each model, counted on PyTorch's meta device (no arithmetic, no memory):
    `Rows` of ``StaticFigures`` with ``params``, ``macs`` and ``flops`` (counts per image), ``file_size``
    (bytes, fp32 safetensors), ``input_size`` (px), published ``top1``/``top5`` (%) with
    ``accuracy_source``, and ``accuracy_density`` (top-1 % per million parameters).

    ``models``: registry names, aliases (``vgg-16``), ``timm/<name>``, or ``path/file.py:function``;
    ``zoo``: add a preset's models; ``input_size``: the input side in pixels (default: each model's
    native size). ``errors``: ``raise`` (the first model that fails to build raises `UserError`) or
    ``skip`` (it is left out, its message in the result's ``failures``). ``db``: a database where
    `evaluate` stored accuracy: the latest eager fp32 top-1/top-5 measured there go beside the published
    ones (``measured_top1``, ``measured_top5``, ``measured_source``)."""
    if errors not in ("raise", "skip"):
        raise UserError(f"errors must be 'raise' or 'skip', got {errors!r}")
    _flags(progress=progress)
    db = _path(db, "db", optional=True)
    from .launch import Launcher
    from .measure.static import static_figures
    from .progressbar import bar
    from .runner.static import counted_apart
    from .zoo.registry import is_user_model

    entries = _entries(models, zoo, input_size)
    results, failures = [], []
    steps = bar(entries, desc="inspect", unit="model", enabled=progress, leave=False)
    with Launcher() as launcher:
        for entry in steps:
            steps.set_postfix_str(entry.name)
            try:
                # a user's file runs in a worker: its exit, abort or hang is its error, not this process's end
                results.append(counted_apart(entry, launcher) if is_user_model(entry.name) else static_figures(entry))
            except UserError as exc:
                failures.append(str(exc))
            except Exception as exc:  # a model that cannot run: said, the others kept
                failures.append(f"model {entry.name!r} failed to build or run: {type(exc).__name__}: "
                                f"{exc}".splitlines()[0])
            if failures and errors == "raise":
                steps.close()
                raise UserError(failures[0])
    if db is not None:
        results = _with_measured(results, db)
    out = Rows(results, render=_inspect_table)
    out.failures = failures
    return out


# -- measuring -------------------------------------------------------------------------------------


def _size(value, name: str) -> int | None:
    from .units import parse_size

    return _quantity(value, name, parse_size, (int,), "a size such as '4GB' or a whole number of bytes")


def _seconds(value, name: str) -> float | None:
    from .units import parse_duration

    return _quantity(value, name, parse_duration, (int, float), "a duration such as '50ms' or a number of seconds")


def _quantity(value, name: str, parse, numbers: tuple, expected: str):
    """``value`` as given in base units (a number), or parsed from text with its unit; None stays None."""
    if value is None or isinstance(value, numbers) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return parse(value)
        except UserError as exc:
            raise UserError(f"{name}: {exc}") from None
    raise UserError(f"{name} must be {expected}, got {value!r}")


def _path(value, name: str, optional: bool = False) -> Path | None:
    """``value`` as a path (text or a path-like object); None only where ``optional``."""
    if value is None and optional:
        return None
    if isinstance(value, (str, os.PathLike)) and str(os.fspath(value)).strip():
        return Path(value)
    raise UserError(f"{name} must be a file or folder path (text or pathlib.Path), got {value!r}")


def _flags(**flags) -> None:
    """Refuses a yes/no option that is not True or False (``quick="yes"`` ran a full sweep once)."""
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise UserError(f"{name} must be True or False, got {value!r}")


def _batch_sizes(value) -> tuple[int, ...]:
    from .units import parse_batch_sizes

    if value is None:
        return BATCH_SIZES
    if isinstance(value, str):
        return tuple(parse_batch_sizes(value))
    if isinstance(value, int):
        value = [value]
    return tuple(value)


def _asked_setups(setup, backend, precision, device, threads, channels_last: bool, machine) -> list[Setup]:
    from .runner.setups import asked

    return asked(setup, backend, precision, device, threads, channels_last, machine)


def _runnable(setups: list[Setup], say: Callable[[str], None]) -> tuple[Setup, ...]:
    from .runner.setups import runnable

    return runnable(setups, say)


def _early_launcher(threads: int):
    """The sweep's launcher, its server started now so that it imports torch while this process resolves
    the models and opens the database (None where another sweep is measuring: its imports would disturb
    that sweep's timings; the sweep then starts its own once it holds the lock)."""
    from .launch import Launcher
    from .runner.lock import is_free

    if not is_free():
        return None
    launcher = Launcher(threads, preload=True)
    launcher.warm()
    return launcher


@dataclass
class RunOutcome:
    """What one `run` did: ``cells``, the cells it asked for as stored now (`Rows` of dicts with the
    export's columns); ``measured`` and ``failed``, the cell rounds it measured now and how many of those
    failed; ``already``, the complete cells it found in the database; ``run_id``, its number there (None
    across a cluster: each machine's run has its own); ``lost``, the machines of a cluster whose part did
    not finish, each with why (the same call again resumes them). ``str()`` is the table `dnnbench run`
    ends with."""

    cells: Rows
    measured: int
    failed: int
    already: int
    run_id: int | None
    summary: str
    lost: list[str] = dataclasses.field(default_factory=list)

    def __str__(self) -> str:
        return self.summary

    @property
    def broken(self) -> list[dict]:
        """The cells asked for whose model crashed or raised (``status`` crashed or error)."""
        return [c for c in self.cells if c["status"] in ("crashed", "error")]


def run(models: str | Sequence[str] = (), *, zoo: str | None = None, batch_sizes: int | str | Sequence[int] | None = None,
        setup: Setup | Sequence[Setup] | None = None, backend: str | Sequence[str] | None = None,
        precision: str | Sequence[str] | None = None, device: str | None = None, threads: int | None = None,
        channels_last: bool = False, machine: str | None = None, db: str | os.PathLike | None = None,
        input_size: int | None = None, quick: bool = False, target_ci: float | None = None,
        max_seconds_per_cell: float | None = None, max_memory: int | str | None = None,
        timeout: float | str | None = None, rounds: int | None = None, retry_failed: bool = False,
        on_busy: str = "wait", weights: str | os.PathLike | None = None, progress: bool = True,
        cluster: str | None = None, machines: str | Sequence[str] | None = None,
        min_samples: int | None = None, argv: Sequence[str] | None = None) -> Results:
    """Measure each model at each batch size in each setup on this machine: latency (median, p90, p99 and
    the 95% interval of the median, seconds), images per second, cold start (seconds), memory (bytes)
    and, where a counter is readable, energy (joules per image) and power (watts). Returns the `Results`
    of the database, with ``last_run`` (a `RunOutcome`) saying what this call measured.

    Every model runs in worker processes, never in this one: a model that crashes, hangs or runs out
    of memory is recorded as such and the sweep goes on. Each cell is committed to the database the
    moment it is measured.

    - ``models``: registry names, aliases, ``timm/<name>`` or ``path/file.py:function``; ``zoo`` adds a
      preset's models; ``input_size``: input side in pixels (default: each model's native size).
    - ``batch_sizes``: default 1, 2, 4, 8, 16, 32, 64.
    - The setups: ``setup`` (a `Setup` or a list of them), or ``backend`` (``eager``, ``compile``,
      ``onnxruntime``, ``openvino``) and ``precision`` (``fp32``, ``bf16``, ``fp16``, ``int8``), each a
      name or a list (every combination this device runs is measured; the others are left out, and
      said), on ``device`` (``cpu``, ``cuda``, ``cuda:N``) with ``threads`` intra-op threads (default:
      the cores this process may use), ``channels_last`` layout, and ``machine`` (the name its cells
      go under; default: this machine's fingerprint).
    - ``db``: the SQLite file to measure into, resumable (a second call measures only what is
      missing); None: a temporary file, deleted with the returned `Results` (see ``Results.path``).
    - ``quick``: a coarse answer fast (±5% target, 3 s per cell, two short rounds). ``target_ci`` (fraction
      of the median, default 0.02), ``max_seconds_per_cell`` (default 20), ``rounds`` (default 3:
      fresh worker processes, minutes apart) override it. ``min_samples``: passes each cell takes at
      least over its rounds (299 bound a p99: MLPerf's multi-stream scenario is batch 8 with it).
    - ``max_memory``: a worker whose resident set passes this (``"4GB"`` or bytes) records ``oom``;
      ``timeout``: a hard limit per cell (``"5min"`` or seconds; default: one that follows the model).
    - ``weights``: measure with these weights (a ``.safetensors`` or ``.pth``/``.pt`` state dict, read
      without unpickling code) instead of random ones; a classifier of another size resizes the
      model's head, which changes its figures. Its cells go under ``NAME [FILE]``.
    - ``retry_failed``: measure again the cells stored as failed. ``on_busy``: ``wait`` (for a quiet
      machine, then flag), ``measure`` (flag only) or ``stop`` (raise `UserError`, cells kept).
    - ``progress``: a bar (a widget in Jupyter) or, off a terminal, one line per cell; False for
      none. Notes and warnings go to standard error either way.
    - ``cluster``: the address of a Ray cluster (``"HEAD:6379"``, ``"auto"``): every node (or those in
      ``machines``: machine names, host names or addresses) measures the same plan on its own hardware,
      one sweep per node pinned to it, its cells streamed into ``db`` here as they are measured, each
      under its node's machine (its Ray label ``dnnbench-machine``, else its fingerprint). The nodes
      need this dnnbench and its model libraries; Ray comes with ``pip install 'dnnbench[cluster]'``.

    Ctrl-C (or a notebook's interrupt) stops it with KeyboardInterrupt; every cell measured is kept."""
    _flags(quick=quick, retry_failed=retry_failed, progress=progress, channels_last=channels_last)
    db, weights = _path(db, "db", optional=True), _path(weights, "weights", optional=True)
    batch_sizes = _batch_sizes(batch_sizes)
    max_memory = _size(max_memory, "max_memory")
    timeout = _seconds(timeout, "timeout")
    say = _say_to(sys.stderr)
    asked = _asked_setups(setup, backend, precision, device, threads, channels_last, machine)
    knobs = dict(target_ci=target_ci, max_seconds_per_cell=max_seconds_per_cell, max_memory=max_memory, quick=quick,
                 timeout_s=timeout, retry_failed=retry_failed, rounds=rounds, on_busy=on_busy, min_samples=min_samples)
    RunConfig(batch_sizes=batch_sizes, setups=tuple(asked), **knobs)  # bad values refused before anything starts
    argv = list(argv) if argv is not None else ["(python)", "dnnbench.run"]
    if cluster is not None:
        return _run_on_cluster(cluster, _names(machines, "machines") if machines else None, models, zoo,
                               input_size, weights, batch_sizes, asked, knobs, db, progress, argv, say)
    if machines:
        raise UserError("machines chooses nodes of a cluster: give the cluster's address too (--cluster HEAD:6379)")
    return _run_here(models, zoo, input_size, weights, batch_sizes, asked, knobs, db, progress, argv, say)


def _run_here(models, zoo, input_size, weights, batch_sizes, asked: list[Setup], knobs: dict, db, progress: bool,
              argv: list[str], say) -> Results:
    """`run` on this machine: one sweep into ``db`` (None: a temporary file that the `Results` owns)."""
    from .runner.sweep import sweep_and_read
    from .store import Store

    cores = _cores()
    launcher = _early_launcher(asked[0].threads or cores)  # imports torch while the rest is checked
    temporary = None
    try:
        entries = _entries(models, zoo, input_size, weights)
        config = RunConfig(batch_sizes=batch_sizes, setups=_runnable(asked, say), **knobs)
        _warn_oversubscribed(asked, cores, say)
        if db is None:
            temporary = tempfile.mkdtemp(prefix="dnnbench-")
            db = Path(temporary) / "results.db"
        with Store(db) as store:
            try:
                result, ran, cells = sweep_and_read(store, config, entries, argv, sys.stderr, progress, launcher)
            except KeyboardInterrupt:
                if temporary:
                    temporary = None  # kept: it holds what was measured
                    raise KeyboardInterrupt(f"interrupted; every cell measured so far is kept in {db}: "
                                            f"dnnbench.open({str(db)!r})") from None
                raise
        results = Results(db, _temporary=temporary)
        temporary = None  # the Results owns it now
        results.last_run = _outcome(result, ran, cells)
        return results
    finally:
        if launcher is not None:
            launcher.close()
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)


def _warn_oversubscribed(setups: list[Setup], cores: int, say) -> None:
    for s in setups:
        if s.threads and s.threads > cores:
            say(f"warning: {s.threads} threads is more than the {cores} cores this process may use; threads "
                "above that oversubscribe them, so every pass waits for cores and measures slower")
            return


def _outcome(result, ran, cells: list[dict]) -> RunOutcome:
    """What one sweep measured, as `run` returns it."""
    from .export import EXPORT_KEYS
    from .runner.progress import summary

    stored = [m for m in result.measured if m.get("stored")]
    return RunOutcome(cells=Rows(cells, columns=EXPORT_KEYS), measured=sum(1 for m in stored if m["status"] == "ok"),
                      failed=sum(1 for m in stored if m["status"] != "ok"), already=result.already,
                      run_id=result.run_id, summary=summary(ran, cells, result))


def _run_on_cluster(address: str, wanted: list[str] | None, models, zoo, input_size, weights, batch_sizes,
                    asked: list[Setup], knobs: dict, db, progress: bool, argv: list[str], say) -> Results:
    """`run` across the nodes of a Ray cluster (`cluster.measure`), into ``db``."""
    from . import cluster
    from .export import EXPORT_KEYS

    found = cluster.measure(address, wanted, models, zoo, input_size, weights, batch_sizes, asked, knobs, db,
                            progress, argv, say)
    results = Results(db)
    results.last_run = RunOutcome(cells=Rows(found.pop("cells"), columns=EXPORT_KEYS), run_id=None, **found)
    return results


def _cores() -> int:
    from .measure.device import default_threads

    return default_threads()


def _say_to(stream, command: str = "run") -> Callable[[str], None]:
    from .runner.progress import say_to

    return say_to(stream, command)


# -- accuracy --------------------------------------------------------------------------------------

ACCURACY_COLUMNS = ("model", "backend", "precision", "images", "top1", "top1_low", "top1_high", "top5", "top5_low",
                    "top5_high", "top1_drop", "skipped", "images_per_s", "weights", "data", "mapping", "input_size",
                    "machine", "device", "threads", "calibration")


def _accuracy_table(rows: list[dict]) -> str:
    from .text import table

    def pct(r, k):
        if r[k] is None:
            return "- (5 classes or fewer)"
        return f"{r[k]:.2f} [{r[k + '_low']:.2f}, {r[k + '_high']:.2f}]"

    body = [[r["model"], f"{r['backend']} {r['precision']}", str(r["images"]), pct(r, "top1"), pct(r, "top5"),
             "-" if r.get("top1_drop") is None else f"{r['top1_drop']:+.2f}", str(r["skipped"]),
             f"{r['images_per_s']:.1f}" if r.get("images_per_s") else "-"] for r in rows]
    lines = [table(["model", "setup", "images", "top-1 % [95% CI]", "top-5 % [95% CI]", "top-1 vs eager fp32",
                    "unreadable", "images/s"], body, right={2, 3, 4, 5, 6, 7})]
    lines.append("Top-1/top-5: share of the images whose label is the model's first / among its first five classes, "
                 "with the 95% Wilson interval; vs eager fp32: the difference in percentage points on the same "
                 "images; images/s: the model's forward passes alone (decoding excluded).")
    for r in rows:
        if r["skipped"]:
            lines.append(f"{r['model']}: {r['skipped']} images could not be read and were left out, e.g. "
                         f"{r['skipped_examples'][0]}")
            break
    if any(r.get("calibration") for r in rows):
        lines.append(next(r["calibration"] for r in rows if r.get("calibration")) + " (the quantizers' scales).")
    return "\n".join(lines)


def evaluate(models: str | Sequence[str] = (), data: str | os.PathLike | None = None, *, zoo: str | None = None,
             weights: str | os.PathLike | None = None, labels: str | os.PathLike | None = None,
             setup: Setup | Sequence[Setup] | None = None, backend: str | Sequence[str] | None = None,
             precision: str | Sequence[str] | None = None, device: str | None = None, threads: int | None = None,
             machine: str | None = None, input_size: int | None = None, crop_pct: float | None = None,
             batch_size: int = 32, limit: int | None = None, workers: int | None = None,
             db: str | os.PathLike | None = None, progress: bool = True) -> Rows:
    """Measure each model's top-1 and top-5 accuracy (%) on your labelled images, with your weights,
    in each setup asked for and in eager fp32 beside it: `Rows` of dicts with ``top1``/``top5`` and
    their 95% Wilson intervals (``top1_low``, ``top1_high``, ...), ``images``, ``top1_drop`` (percentage
    points against eager fp32 on the same images), ``skipped`` (unreadable images, never silently
    dropped), ``images_per_s`` (the forward passes alone) and how the classes were mapped.

    - ``data``: a folder with one sub-folder per class (named by WordNet id, by output index, or by
      your own class names: sorted, as torchvision's ImageFolder maps them), or a folder of images
      with a ``labels.csv`` (``file,label``; or ``labels=`` its path). ``limit``: the first N images,
      spread over the classes.
    - ``weights``: a ``.safetensors`` or ``.pth``/``.pt`` state dict (never unpickled as code: a file
      holding other objects is refused); a classifier head of another size is resized to the file's.
      Without it, the published weights' file in torchvision's or timm's (Hugging Face) cache, if on disk.
    - Preprocessing is the model's own (its weights' transforms or pretrained configuration);
      ``input_size`` (the crop, px) and ``crop_pct`` override it.
    - The setups, as for `run`: ``setup``, or ``backend``/``precision`` lists, ``device``, ``threads``;
      int8 calibrates on 16 of the images, spread evenly over the set.
    - ``db``: store the results in this database (next to its measurements); None: not stored.
    - ``workers``: data-loading processes (default: the cores this process may use, at most 4)."""
    from .evaluation import evaluate as run_evaluation

    if data is None:
        raise UserError("no data given: give the folder of labelled images (data=..., --data DIR)")
    _flags(progress=progress)
    data, weights = _path(data, "data"), _path(weights, "weights", optional=True)
    labels, db = _path(labels, "labels", optional=True), _path(db, "db", optional=True)
    for name, value in (("batch_size", batch_size), ("limit", limit), ("workers", workers)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UserError(f"{name} must be a whole number of at least 1, got {value!r}")
    if crop_pct is not None and (isinstance(crop_pct, bool) or not isinstance(crop_pct, (int, float))
                                 or not 0 < crop_pct <= 1):
        raise UserError(f"crop_pct is the centre crop over the resized side, from above 0 to 1, e.g. 0.875; got "
                        f"{crop_pct!r}")
    if workers is not None and workers > 4 * _cores():
        raise UserError(f"{workers} data-loading workers on {_cores()} cores: give at most {4 * _cores()} "
                        "(--workers N; the default is one per core, at most 4)")
    if batch_size > MAX_BATCH:
        raise UserError(f"batch size {batch_size} is above {MAX_BATCH}: give a smaller --batch-size")
    say = _say_to(sys.stderr, "eval")
    asked = _asked_setups(setup, backend, precision, device, threads, False, machine)
    entries = _entries(models, zoo, input_size)
    setups = _runnable(asked, say)
    RunConfig(setups=setups)  # one device and thread count
    store = None
    try:
        if db is not None:
            from .store import Store

            store = Store(db)
        machine_name = _machine_name(setups[0], store)
        rows = run_evaluation(entries, list(setups), data, weights=weights, labels=labels, batch_size=batch_size,
                              limit=limit, workers=workers or min(4, _cores()), eval_input_size=input_size,
                              crop_pct=crop_pct, store=store, machine=machine_name, progress=progress, say=say)
    finally:
        if store is not None:
            store.close()
    reference = {(r["model"]): r["top1"] for r in rows if is_reference(r)}
    for r in rows:
        r["top1_drop"] = None if is_reference(r) else r["top1"] - reference[r["model"]]
    return Rows(rows, render=_accuracy_table, columns=ACCURACY_COLUMNS)


class Served(Rows):
    """What `serve` measured: one dict per point (a rate served: ``qps`` offered, ``achieved_qps``,
    ``p50_s``/``p90_s``/``p99_s``, the percentile's 95% bounds ``q_low_s``/``q_high_s``, ``verdict``
    against the limit, ``load_cpu_s`` of the load generator and ``load_apart``: whether it had a core of
    its own, ``disturbed``), and ``peaks``: per
    model, setup and policy, the highest rate shown to meet the limit. ``str()``: both as tables."""

    def __init__(self, points: list, peaks: list, q: float, limit_s: float):
        super().__init__(points, render=lambda rows: _served_table(rows, peaks, q, limit_s))
        self.peaks = Rows([p.to_dict() for p in peaks])


def _served_table(points: list, peaks: list, q: float, limit_s: float) -> str:
    from .analysis.serving import load_share
    from .text import table
    from .units import format_rate

    pct = f"p{100 * q:g}"
    rows = [[p["model"], f"{p['backend']} {p['precision']}", f"{p['max_batch']}/{p['max_wait_s'] * 1e3:g}ms/"
             f"{p['instances']}", format_rate(p.get("qps")), format_rate(p.get("achieved_qps")),
             str(p.get("requests") or "-"),
             _ms_or_dash(p.get("p50_s")), _ms_or_dash(p.get("q_high_s")), p.get("verdict") or p["status"],
             (f"{100 * load_share(p):.1f}" + ("" if p.get("load_apart") is None else
                                                (" own" if p["load_apart"] else " shared"))) if p.get("wall_s") else "-",
             "busy" if p.get("disturbed") else ("quiet" if p.get("disturbed") is not None else "-")]
            for p in points]
    text = table(["model", "setup", "batch/wait/inst", "offered/s", "served/s", "requests", "p50 (ms)",
                  f"{pct} bound (ms)", "verdict", "load gen (% core)", "load"], rows,
                 right={3, 4, 5, 6, 7, 9})
    lines = [text, f"Peak: the highest rate whose {pct} has its 95% upper bound under {limit_s * 1e3:.3g} ms "
                   "(a rate is never credited on a point estimate); batch/wait/inst: the batching policy; load gen: "
                   "the load generator's CPU time over the point's, on a core of its own (own) or, with no core "
                   "to spare beside the model's threads, sharing them (shared)."]
    for p in peaks:
        s = p.served
        where = f"{s.model} ({s.setup.runtime()}, {s.policy_words()})"
        if p.qps is None:
            lines.append(f"  {where}: no rate measured met the limit")
        else:
            lines.append(f"  {where}: {format_rate(p.qps)} requests/s"
                         + (f" (and not {format_rate(p.next_failed)})" if p.next_failed else "")
                         + (f", held for {p.held_s:.0f} s" if p.held_s else "")
                         + (" [machine busy]" if p.disturbed else "") + _speed_words(p))
    return "\n".join(lines)


def _speed_words(p) -> str:
    """How far the machine's speed moved along the peak's search, where its points recorded it."""
    if p.speed_range is None:
        return ""
    low, high = p.speed_range
    if high - low < 0.1:
        return f"; the passes kept their speed through the search (within {100 * (high - low):.0f}%)"
    return (f"; the passes ran {low:.2f}x to {high:.2f}x as long as at the peak's point during the search: "
            "the machine's speed moved, measure again to see the peak move with it")


def _ms_or_dash(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.3g}"


def _wait_seconds(max_wait) -> float:
    """A batching policy's longest wait in seconds: a duration, or zero (no waiting) with or without a unit."""
    zero = isinstance(max_wait, str) and re.fullmatch(r"\s*0*\.?0*\s*(us|ms|s|min)?\s*", max_wait)
    wait = 0.0 if zero else _seconds(max_wait, "max_wait")
    if wait is None or wait < 0:
        raise UserError(f"max_wait must be zero or more, e.g. '5ms', got {max_wait!r}")
    return float(wait)


def serve(models: str | Sequence[str] = (), *, zoo: str | None = None, p99: float | str | None = None,
          p90: float | str | None = None, qps: float | Sequence[float] | None = None,
          max_batch: int | Sequence[int] = 1, max_wait: float | str = 0.0, instances: int | Sequence[int] = 1,
          setup: Setup | Sequence[Setup] | None = None, backend: str | Sequence[str] | None = None,
          precision: str | Sequence[str] | None = None, device: str | None = None, threads: int | None = None,
          machine: str | None = None, input_size: int | None = None, weights: str | os.PathLike | None = None,
          db: str | os.PathLike | None = None, max_seconds_per_point: float = 10.0,
          max_seconds_per_search: float = 120.0, on_busy: str = "wait", progress: bool = True,
          argv: Sequence[str] | None = None) -> Served:
    """Serve each model under Poisson arrivals (MLPerf's Server scenario) on this machine and find the
    highest rate (requests per second) whose tail latency stays under the limit: ``p99`` (or ``p90``),
    ``"50ms"`` or seconds, met when the percentile's distribution-free 95% upper bound is under it.
    ``qps``: measure these rates instead of searching. The batching policy: ``max_batch`` (requests
    batched together, padded to a prepared batch size), ``max_wait`` (how long the oldest request may
    wait for a batch to fill) and ``instances`` (copies of the model serving one queue); a list of
    ``max_batch`` or ``instances`` measures each. Setups as for `run`. Each point runs until its
    percentile is decided, at most ``max_seconds_per_point`` (longer where the requests its bound
    needs take longer to arrive); a search ends after ``max_seconds_per_search`` with what it has
    bracketed. ``db``: stored there (None: a temporary file). The first search's budget counts from this
    call. Returns `Served`."""
    asked_at = time.time()
    from .measure.serving import Policy
    from .runner.serving import ServeConfig, serve_sweep

    _flags(progress=progress)
    if (p99 is None) == (p90 is None):
        raise UserError("give the tail limit: p99 (or p90), e.g. p99='50ms'")
    q, limit = (0.99, _seconds(p99, "p99")) if p99 is not None else (0.90, _seconds(p90, "p90"))
    wait = _wait_seconds(max_wait)
    rates = None if qps is None else tuple(float(r) for r in (qps if isinstance(qps, (list, tuple)) else [qps]))
    batches = list(max_batch) if isinstance(max_batch, (list, tuple)) else [max_batch]
    copies = list(instances) if isinstance(instances, (list, tuple)) else [instances]
    for name, values in (("max_batch", batches), ("instances", copies)):
        if not values or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_BATCH for v in values):
            raise UserError(f"{name} must be whole numbers from 1 to {MAX_BATCH}, got {values!r}")
    db, weights = _path(db, "db", optional=True), _path(weights, "weights", optional=True)
    say = _say_to(sys.stderr, "run")
    asked = _asked_setups(setup, backend, precision, device, threads, False, machine)
    config = ServeConfig(setups=tuple(_runnable(asked, say)), policies=tuple(Policy(b, float(wait), n) for b in batches
                                                                              for n in copies),
                         percentile=q, limit_s=limit, qps=rates, max_seconds_per_point=max_seconds_per_point,
                         max_seconds_per_search=max_seconds_per_search, on_busy=on_busy)
    entries = _entries(models, zoo, input_size, weights)
    temporary = tempfile.mkdtemp(prefix="dnnbench-") if db is None else None
    try:
        from .analysis.serving import peak, group
        from .store import Store

        with Store(db or Path(temporary) / "results.db") as store:
            points = serve_sweep(store, config, entries,
                                 list(argv) if argv is not None else ["(python)", "dnnbench.serve"],
                                 say if progress else (lambda text: None), since=asked_at)
        return Served(points, [peak(s, q, limit) for s in group(points)], q, limit)
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)


def versus(models: str | Sequence[str], versus: str | dict, *, batch_sizes: int | str | Sequence[int] | None = 1,
           backend: str | None = None, precision: str | None = None, device: str | None = None,
           threads: int | None = None, channels_last: bool = False, machine: str | None = None,
           input_size: int | None = None, db: str | os.PathLike | None = None, rounds: int | None = None,
           target_ci: float | None = None, max_seconds_per_cell: float | None = None, on_busy: str = "measure",
           margin: float = 0.05, progress: bool = True, argv: Sequence[str] | None = None) -> Comparison:
    """Each model against ``versus`` (``"backend=onnxruntime"``, ``"precision=int8"``,
    ``{"model": "resnet34"}``, ``"python=/opt/next/bin/python"``: another environment's interpreter and
    libraries, with this dnnbench's measuring code: the fields the new side changes), measured by two workers that take
    turns on the machine, block by block, so that both sides see the same seconds of it (the machine's
    drift between minutes cancels); ``rounds`` fresh pairs of processes, each batch size until the
    ratio's 95% interval is within ``target_ci`` or ``max_seconds_per_cell`` seconds a round (None:
    `runner.pairs.VERSUS_DEFAULTS`, 5 rounds, 0.01, 4 s). The base
    setup as for `run` (one backend and precision). ``db``: stored there, in the ``pairs`` table that
    `compare` reads (None: a temporary file). Returns the `Comparison` at ``margin``."""
    from .comparing import parse_where
    from .runner.pairs import PairConfig, pair_sweep

    _flags(progress=progress)
    changed = parse_where(versus, "versus")
    entries = _entries(models, None, input_size, None)
    if "model" in changed and len(entries) != 1:
        raise UserError(f"--versus model=... compares one model with another: give one model, got {len(entries)}")
    db = _path(db, "db", optional=True)
    base = Setup(backend=backend or "eager", precision=precision or "fp32", device=device or "cpu",
                 threads=threads, layout="channels_last" if channels_last else "nchw", machine=machine)
    given = {k: v for k, v in (("rounds", rounds), ("target_ci", target_ci),
                               ("max_seconds_per_cell", max_seconds_per_cell)) if v is not None}
    config = PairConfig(setup=base, versus=changed, batch_sizes=_batch_sizes(batch_sizes), on_busy=on_busy, **given)
    say = _say_to(sys.stderr, "run")
    temporary = tempfile.mkdtemp(prefix="dnnbench-") if db is None else None
    path = db or Path(temporary) / "results.db"
    try:
        from .store import Store

        with Store(path) as store:
            rows = pair_sweep(store, config, entries, list(argv) if argv is not None else ["(python)", "dnnbench.versus"],
                              say if progress else (lambda text: None))
        fields = [k for k in changed if k != "python"]
        base_where = {k: (entries[0].name if k == "model" else str(getattr(config.setup, k))) for k in fields}
        new_where = {k: (_entries([changed[k]], None, entries[0].input_size)[0].name if k == "model"
                         else str(changed[k])) for k in fields}
        if "python" in changed:  # the sides differ by what their interpreters reported
            from .runner.pairs import interpreter_sides

            base_software, new_software = interpreter_sides(rows)
            base_where, new_where = {**base_where, **base_software}, {**new_where, **new_software}
        return compare(path, base_where=base_where, new_where=new_where, margin=margin)
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)


def merge(sources: str | os.PathLike | Sequence[str | os.PathLike], into: str | os.PathLike):
    """Merge databases measured apart (``dnnbench run`` on an edge board, an air-gapped host) into ``into``
    (created if absent), reading the sources and never writing them. Cells stay apart by setup (the
    machine is part of it); a cell both hold is added once however often it is merged, its rounds
    pooled where each holds rounds the other lacks, and two versions of one cell that cannot be pooled
    are a conflict: the measured one is kept over a failed one, then the one with more rounds, then the
    later. Returns what it did (``str()``: in words; ``to_dict()``)."""
    from .merging import merge as merge_

    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    try:
        sources = list(sources)
    except TypeError:
        raise UserError(f"sources must be a database path or a list of them, got {sources!r}") from None
    return merge_([_path(s, "each source") for s in sources], _path(into, "into"))


def compare(base: str | os.PathLike, new: str | os.PathLike | None = None, *, base_where: str | dict | None = None,
            new_where: str | dict | None = None, margin: float = 0.05) -> Comparison:
    """The cells of ``base`` measured again in ``new`` (another database, or the same one with
    ``new`` None): per cell, new's latency over base's (above 1: slower) with its 95% interval, paired
    round by round where the two were measured in the same run, and a verdict at ``margin`` (a
    fraction: 0.05 for 5%); the geometric mean per pair of setups. ``base_where``/``new_where`` select
    each side: ``"backend=eager"``, ``{"machine": "laptop"}``, ``"model=resnet18"``, ``"run=3"``, or a
    version the run recorded (``"torch=2.14"``); the key fields they name are what differs between
    the sides. Both databases are only read. Returns a `Comparison`."""
    from .comparing import parse_where, sides

    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 < margin < 1:
        raise UserError(f"the margin must be a fraction above 0 and below 1, e.g. 0.05 for 5%, got {margin!r}")
    wheres = parse_where(base_where, "--base"), parse_where(new_where, "--new")
    found = sides(_path(base, "base"), _path(new, "new", optional=True), *wheres)
    return Comparison(found, float(margin), _path(base, "base"), _path(new, "new", optional=True), wheres)


class Comparison(Rows):
    """The answer of `compare`: one dict per pair of cells, with the key (``model``, ``batch_size``, ...),
    each side's setup and median (``base_median_s``, ``new_median_s``), ``ratio`` (new over base) and
    its 95% interval ``low``/``high``, ``paired`` (round by round, over ``rounds``), ``interleaved`` (the
    two took turns on the machine, `run --versus`) and ``verdict``
    (slower, slower within the margin, faster, same, undecided). ``geomeans``: per pair of setups, the
    geometric mean of the ratios and its verdict. ``regressions(on)``: the cells (``on="cell"``) or
    geometric means (``"geomean"``) shown slower with a slowdown beyond the margin not ruled out."""

    def __init__(self, found, margin: float, base=None, new=None, wheres: tuple[dict, dict] = ({}, {})):
        from .analysis.compare import change, geometric_mean, verdict

        self.wheres = wheres  # each side's selection: what the text names the sides by, beyond their setups
        rows, groups = [], {}
        for base, new in found.pairs:
            ratio = change(base, new)
            a, b = Setup.of(base), Setup.of(new)
            row = {**{k: base[k] for k in ("model", "input_size", "batch_size")},
                   "base_setup": a.label(machine=True), "new_setup": b.label(machine=True),
                   **({"base_model": base["model"], "new_model": new["model"]} if base["model"] != new["model"] else {}),
                   "base_median_s": base.get("latency_median_s"), "new_median_s": new.get("latency_median_s"),
                   "ratio": ratio.value if ratio else None, "low": ratio.low if ratio else None,
                   "high": ratio.high if ratio else None, "paired": ratio.paired if ratio else None,
                   "rounds": ratio.rounds if ratio else None, "interleaved": bool(ratio and ratio.interleaved),
                   "verdict": verdict(ratio, margin) if ratio else f"not comparable: {_failed(base, new)}",
                   "disturbed": bool(base.get("disturbed") or new.get("disturbed"))}
            rows.append(row)
            if ratio is not None:
                groups.setdefault((row["base_setup"], row["new_setup"]), []).append(ratio)
        rows.sort(key=lambda r: (r["base_setup"], r["new_setup"], r["model"], r["input_size"], r["batch_size"]))
        super().__init__(rows, render=self._text)
        self.margin = margin
        self.base, self.new = base, new
        self.differing = found.differing
        self.only_base, self.only_new = len(found.only_base), len(found.only_new)
        self.warnings = list(found.warnings)  # conditions the sides were measured apart in, beyond what was asked
        self.geomeans = Rows([{"base_setup": a, "new_setup": b, "cells": len(rs), "ratio": g.value, "low": g.low,
                               "high": g.high, "verdict": verdict(g, margin)}
                              for (a, b), rs in groups.items() for g in [geometric_mean(rs)]])

    def report(self, out: str | os.PathLike, force: bool = False) -> Path:
        """Write compare.html (the figure of every cell's ratio and interval, and the table), its figure
        as PNG and SVG, and compare.csv into the folder ``out``; returns the page's path. A file there
        that is an SQLite database is overwritten only with ``force``."""
        from .report.compare import build_compare_report

        _flags(force=force)
        out = _path(out, "out")
        try:
            return build_compare_report(self, out, self.base, self.new, force)
        except OSError as exc:  # disk full, read-only, a file where a folder should be
            raise UserError(f"cannot write the comparison into {out}: {exc.strerror or exc}; choose another "
                            "--report folder") from exc

    def regressions(self, on: str = "cell") -> Rows:
        if on not in ("cell", "geomean"):
            raise UserError(f"regressions are of a cell or of the geometric mean (on='cell' or 'geomean'), got {on!r}")
        return Rows(r for r in (self if on == "cell" else self.geomeans) if r["verdict"] == "slower")

    def _text(self, rows: list) -> str:
        from .text import short_name, table
        from .units import format_seconds

        pct = f"{100 * self.margin:g}%"
        body = [[short_name(r.get("base_model", r["model"])) + (f" -> {short_name(r['new_model'])}"
                                                                  if "new_model" in r else ""),
                 str(r["batch_size"]), format_seconds(r["base_median_s"]), format_seconds(r["new_median_s"]),
                 _ratio_words(r), "in turns" if r.get("interleaved") else "paired" if r["paired"] else
                 ("rounds" if r["rounds"] else "-"),
                 r["verdict"] + (" [busy]" if r["disturbed"] else "")] for r in rows]
        lines = [f"warning: {w}" for w in self.warnings]
        versions = [{k: v for k, v in w.items() if k not in CELL_KEY} for w in self.wheres]
        if any(versions):  # sides told apart by what their runs or interpreters recorded (torch=2.14.1)
            lines.append("   ".join(f"{side}: {', '.join(f'{k}={v}' for k, v in w.items()) or 'the rest'}"
                                    for side, w in zip(("base", "new"), versions, strict=True)))
        setups = sorted({(r["base_setup"], r["new_setup"]) for r in rows})
        for a, b in setups:
            lines.append(f"base: {a}   new: {b}" if a != b else f"setup: {a}")
        lines.append(table(["model", "batch", "base", "new", "new/base (95%)", "interval", "verdict"], body,
                           right={1, 2, 3}))
        for g in self.geomeans:
            lines.append(f"geometric mean over {g['cells']} cells ({g['base_setup']} -> {g['new_setup']}): "
                         f"{_ratio_words(g)}, {g['verdict']}")
        counts = {v: sum(1 for r in rows if r["verdict"] == v) for v in dict.fromkeys(r["verdict"] for r in rows)}
        lines.append(", ".join(f"{n} {v}" for v, n in counts.items()) + f" (margin {pct}). "
                     f"{self.only_base} cells only in base, {self.only_new} only in new.")
        lines.append(f"new/base: new's latency over base's, above 1 slower. interval: in turns, over the rounds of "
                     f"two workers that took turns on the machine (run --versus); paired, over the rounds both took "
                     f"in one run (the same minutes of the machine), else from each side's rounds (separate "
                     f"processes, minutes apart). slower: shown slower and a slowdown beyond {pct} not ruled out; "
                     f"same: within {pct} either way; undecided: the interval is too wide to say (measure more rounds).")
        return "\n".join(lines)


def _ratio_words(r: dict) -> str:
    if r.get("ratio") is None:
        return "-"
    high = "inf" if r["high"] == math.inf else f"{r['high']:.3f}"
    return f"{r['ratio']:.3f} ({r['low']:.3f}-{high})"


def _failed(base: dict, new: dict) -> str:
    return "; ".join(f"{side} {c.get('status')}" for side, c in (("base", base), ("new", new)) if c.get("status") != "ok")


def _machine_name(setup: Setup, store) -> str:
    from .measure.device import machine_environment
    from .setup import fingerprint, machine_id

    env = machine_environment(setup.device)
    name = setup.machine or machine_id(env)
    if store is not None:
        store.register_machine(name, fingerprint(env))
    return name


# -- reading results -------------------------------------------------------------------------------


class Results:
    """The measurements in one dnnbench database. Each property and method reads the file when called
    (read-only: the file is never changed), so it sees cells that another run added meanwhile.

    ``path``: the SQLite file. ``last_run``: what the `run` that returned this measured (None from
    `open`)."""

    def __init__(self, path: str | os.PathLike, *, _temporary: str | None = None):
        self.path = _path(path, "the database path")
        self.last_run: RunOutcome | None = None
        self._temporary = _temporary
        self._cleanup = weakref.finalize(self, shutil.rmtree, _temporary, True) if _temporary else None

    def __repr__(self) -> str:
        kind = "temporary database" if self._temporary else "database"
        return f"<dnnbench.Results of the {kind} {str(self.path)!r}>"

    def close(self) -> None:
        """Delete the temporary database of a `run` made with ``db=None`` (nothing for a file of yours)."""
        if self._cleanup is not None:
            self._cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _store(self):
        from .store import Store

        if self._cleanup is not None and not self._cleanup.alive:
            raise UserError(f"these results were closed and their temporary database {self.path} deleted: "
                            "run again, with db='FILE' to keep them")
        return Store(self.path, create=False)

    @property
    def cells(self) -> Rows:
        """Every cell of the database, one dict each with the export's columns (``dnnbench export``):
        model, setup (machine, device, backend, precision, threads, layout), batch_size, status, the
        latency figures in seconds, images_per_s, memory in bytes, energy in joules, and more."""
        from .export import EXPORT_KEYS, rows

        with self._store() as store:
            return Rows(rows(store), columns=EXPORT_KEYS)

    @property
    def scenarios(self) -> Rows:
        """MLPerf Inference's four scenarios per model and setup, from what is stored: single-stream (the
        batch-1 cell's p90 and its 95% upper bound), multi-stream (the batch-8 cell's p99 and its bound),
        offline (the best images per second over the batch sizes, with its interval and batch) and
        server (the highest rate `serve` showed under its tail limit). One dict each, the scenario's
        name before each figure (``multi_stream_p99_high_s``); None where that scenario was not measured."""
        from .analysis.data import load
        from .analysis.scenarios import render, scenarios

        with self._store() as store:
            found = scenarios(load(store), store.serving())
        return Rows(found, render=render)

    @property
    def accuracy(self) -> Rows:
        """Every accuracy `evaluate` stored here (``dnnbench eval --db``), oldest first: one dict each
        with the model, the setup, top1/top5 (%) and their 95% intervals, images, unreadable images
        skipped, images per second, the weights file, the data folder and how its classes were mapped."""
        with self._store() as store:
            return Rows(store.accuracies(), render=_accuracy_table)

    @property
    def pairs(self) -> Rows:
        """Every round of every comparison measured in turns (`versus`, ``run --versus``), oldest first:
        one dict each with the base (model and setup) and the new side (``new_model``, ``new_backend``,
        ...), the batch size, the round, new over base (``ratio``, its 95% interval ``ratio_low`` and
        ``ratio_high`` over the round's paired blocks), each side's median in seconds and its block
        medians, and what other processes used of the machine meanwhile."""
        with self._store() as store:
            return Rows(store.pairs())

    @property
    def setups(self) -> list[Setup]:
        """Every setup measured in the database."""
        with self._store() as store:
            return sorted({Setup.of(c) for c in store.cells()}, key=lambda s: tuple(map(str, s.key())))

    @property
    def runs(self) -> Rows:
        """Every run recorded: its id, start and end, arguments, configuration, environment and outcome."""
        with self._store() as store:
            return Rows(store.runs())

    def _measured(self) -> list:
        from .analysis.data import load

        with self._store() as store:
            found = load(store)
        if not found:
            raise UserError(f"{self.path} holds no measurements yet: run `dnnbench run MODEL... --db {self.path}` first")
        return found

    def export(self, format: str = "csv", out: str | os.PathLike | None = None, force: bool = False) -> str | Path:
        """Every cell as CSV or JSON text (``format``), or written to the file ``out`` (returned). A
        file that is an SQLite database (this one included) is overwritten only with ``force``."""
        from .export import check_output, export, write_output

        if format not in ("csv", "json"):
            raise UserError(f"format must be 'csv' or 'json', got {format!r}")
        _flags(force=force)
        out = _path(out, "out", optional=True)
        if out is not None:
            check_output(str(out), self.path, force)
        with self._store() as store:
            text = export(store, format)
        if out is None:
            return text
        write_output(str(out), text)
        return Path(out)

    def report(self, out: str | os.PathLike = DEFAULT_REPORT, *, batch_size: int | None = None,
               max_latency: float | str | None = None, setup: str | None = None, force: bool = False) -> Path:
        """Write the report into the folder ``out``: report.html (self-contained, works offline), every
        figure as PNG and SVG, and the tables as CSV; returns the page's path. ``batch_size``: of the
        single-batch figures (default 16, or the measured one nearest); ``max_latency``: a limit
        shaded on the Pareto figure (``"50ms"`` or seconds); ``setup``: the setup the per-model figures
        show, by words of its fields (``"onnxruntime,int8"``; default: the one with the most cells)."""
        from .analysis.recommend import Limits
        from .report import build_report

        _flags(force=force)
        out = _path(out, "out")
        latency = _seconds(max_latency, "max_latency")
        limits = Limits(max_memory=10**15, max_latency=latency) if latency is not None else None
        with self._store() as store:
            try:
                return build_report(store, out, batch=batch_size, limits=limits, force=force, setup=setup)
            except OSError as exc:  # disk full, read-only, a file where a folder should be
                raise UserError(f"cannot write the report into {out}: {exc.strerror or exc}; "
                                "choose another --out") from exc

    def recommend(self, max_memory: int | str, max_latency: float | str | None = None, *,
                  min_fps: float | None = None, batch_size: int = 1, min_top1: float | None = None,
                  max_energy: float | None = None, backend: str | Sequence[str] | None = None,
                  precision: str | Sequence[str] | None = None, machine: str | Sequence[str] | None = None,
                  models: str | Sequence[str] = (), zoo: str | None = None, measure: bool = False,
                  quick: bool = False, progress: bool = True, on_busy: str = "wait") -> Recommendation:
        """The measured (model, setup) pairs that meet every limit, most accurate first, then those that
        fail with the limits they break: a `Recommendation`. Limits at ``batch_size``: ``max_memory``
        (``"1GB"`` or bytes), one of ``max_latency`` (of one batch: ``"50ms"`` or seconds) and
        ``min_fps`` (images per second), optional ``min_top1`` (%) and ``max_energy`` (joules per
        image). ``backend``, ``precision``, ``machine``: only the setups measured so.

        ``measure``: answer among the candidates ``models`` and ``zoo`` on this machine (in ``backend``
        and ``precision``, default eager fp32), measuring only the ones that decide the answer (see
        `analysis.search`); ``quick`` measures them with `run`'s quick budgets; ``on_busy`` is `run`'s and
        `predict`'s, for its cells and kernels. The answer's ``steps`` say which were measured and why."""
        from .analysis.recommend import Limits, recommend

        if max_memory is None:
            raise UserError("max_memory is required: the memory the model may use, e.g. '2GB'")
        _flags(measure=measure, quick=quick, progress=progress)
        limits = Limits(max_memory=_size(max_memory, "max_memory"), max_latency=_seconds(max_latency, "max_latency"),
                        min_fps=min_fps, batch_size=batch_size, min_top1=min_top1, max_energy=max_energy)
        steps = None
        if measure:
            steps, setup, names = self._measure_to_decide(limits, models, zoo, backend, precision, quick, progress,
                                                          on_busy)
            found = [m for m in self._measured() if m.setup == setup and m.model in names]
        else:
            if models or zoo:
                raise UserError("models and zoo choose the candidates of recommend --measure; without it, recommend "
                                "answers among the measured models")
            found = self._only(self._measured(), backend=backend, precision=precision, machine=machine)
        passing, failing = recommend(found, limits)
        return Recommendation(passing, failing, limits, steps)

    def recommend_serving(self, qps: float, *, p99: float | str | None = None, p90: float | str | None = None,
                          max_memory: int | str | None = None, backend: str | Sequence[str] | None = None,
                          precision: str | Sequence[str] | None = None,
                          machine: str | Sequence[str] | None = None, models: str | Sequence[str] = (),
                          zoo: str | None = None, measure: bool = False, max_batch: int = 1,
                          max_wait: float | str = 0.0, instances: int = 1, max_seconds_per_point: float = 10.0,
                          progress: bool = True, on_busy: str = "wait") -> ServingAnswer:
        """The answer to a load: ``qps`` requests a second (Poisson) with ``p99`` (or ``p90``) under a
        limit (``"50ms"`` or seconds) and, optionally, serving within ``max_memory``: each (model, setup,
        batching policy) that `serve` measured here, those that meet it first, most accurate first, with
        the rate it sustains (its ``margin`` over ``qps``) and what it breaks. Per machine in a fleet.

        ``measure``: answer among the candidates ``models`` and ``zoo`` on this machine (one ``backend``
        and ``precision``, default eager fp32; the policy ``max_batch``, ``max_wait``, ``instances``),
        serving only those that decide it: most accurate first, the first that meets the load is the
        answer; one whose measured batches cannot reach the rate is skipped unserved
        (`analysis.search.decide_serving`). The answer's ``steps`` say what was done with each."""
        from .analysis.serving import answer

        if (p99 is None) == (p90 is None):
            raise UserError("give the tail limit of the load: p99 (or p90), e.g. p99='50ms'")
        if isinstance(qps, bool) or not isinstance(qps, (int, float)) or not qps > 0:
            raise UserError(f"qps must be requests per second above zero, got {qps!r}")
        q, limit = (0.99, _seconds(p99, "p99")) if p99 is not None else (0.90, _seconds(p90, "p90"))
        memory = _size(max_memory, "max_memory")
        _flags(measure=measure, progress=progress)
        if not measure and (models or zoo):
            raise UserError("models and zoo choose the candidates of recommend --qps --measure; without it, "
                            "recommend answers among what was served")
        steps = None
        if measure:
            steps, setup, names = self._serve_to_decide(
                float(qps), q, limit, memory, models, zoo, backend, precision, max_batch, max_wait, instances,
                max_seconds_per_point, progress, on_busy)
            backend, precision, machine = setup.backend, setup.precision, setup.machine
        if measure and not Path(self.path).exists():  # every candidate ruled out before a database began
            points, top1 = [], {}
        else:
            with self._store() as store:
                points = store.serving()
                if measure:
                    points = [p for p in points if p["model"] in names and Setup.of(p) == setup]
                top1 = {(m["model"], m["input_size"]): m.get("top1") for m in store.models()}
        if not points and not measure:
            raise UserError(f"{self.path} holds no measurement under load: run `dnnbench run MODEL --scenario server "
                            f"--p99 {limit * 1e3:g}ms --db {self.path}` first")
        wanted = {"backend": _names(backend, "backend") if backend else None,
                  "precision": _names(precision, "precision") if precision else None,
                  "machine": _names(machine, "machine") if machine else None}
        points = [p for p in points if all(v is None or p[k] in v for k, v in wanted.items())]
        for key in {(p["model"], p["input_size"]) for p in points} - {k for k, v in top1.items() if v is not None}:
            top1[key] = _published_top1(*key)  # served only: no sweep stored its figures
        return ServingAnswer(answer(points, top1, float(qps), q, limit, memory), float(qps), q, limit, steps)

    def _serve_to_decide(self, qps, q, limit, memory, models, zoo, backend, precision, max_batch, max_wait,
                         instances, max_seconds_per_point, progress, on_busy):
        """Serve the candidates that decide the answer to a load (`deciding.serve_to_decide`): (the steps,
        the setup served, the candidates' names)."""
        from .deciding import serve_to_decide
        from .measure.serving import Policy

        entries, setup = _candidates(models, zoo, backend, precision, "recommend --qps --measure", "serves")
        try:
            policy = Policy(max_batch, _wait_seconds(max_wait), instances)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        pct = {0.99: "p99", 0.90: "p90"}[q]

        def serve_one(name: str) -> None:
            serve(name, **{pct: limit}, max_batch=policy.max_batch, max_wait=policy.max_wait_s,
                  instances=policy.instances, backend=setup.backend, precision=setup.precision,
                  threads=setup.threads, machine=setup.machine, db=self.path,
                  max_seconds_per_point=max_seconds_per_point, on_busy=on_busy, progress=progress,
                  argv=["recommend", "--qps", f"{qps:g}", "--measure", name])

        def open_store(writable: bool):
            return self._writable() if writable else self._store()

        steps = serve_to_decide(entries, setup, policy, q, limit, qps, memory, open_store, serve_one)
        return steps, setup, [e.name for e in entries]

    def _measure_to_decide(self, limits, models, zoo, backend, precision, quick: bool, progress: bool,
                           on_busy: str = "wait"):
        """Measure the candidates that decide the answer (`analysis.search.decide`): (the steps, the
        setup measured, the candidates' names)."""
        from .deciding import measure_to_decide

        entries, setup = _candidates(models, zoo, backend, precision, "recommend --measure", "measures")

        def open_store(writable: bool):
            return self._writable() if writable else self._store()

        steps = measure_to_decide(self.path, limits, entries, setup, quick, progress, open_store,
                                  say=_say_to(sys.stderr, "recommend"), on_busy=on_busy)
        return steps, setup, {e.name for e in entries}

    def _only(self, found: list, **wanted) -> list:
        """The measured models whose setups have the ``wanted`` field values; UserError naming what was
        measured where a value matches nothing."""
        for field, value in wanted.items():
            if value is None:
                continue
            names = set(_names(value, field))
            if not names:
                raise UserError(f"{field} needs at least one name")
            measured = sorted({str(getattr(m.setup, field)) for m in found})
            missing = sorted(names - set(measured))
            if missing:
                raise UserError(f"{field} {', '.join(missing)}: not measured in {self.path} "
                                f"(measured: {', '.join(measured)})")
            found = [m for m in found if str(getattr(m.setup, field)) in names]
        return found

    def predict(self, models: str | Sequence[str] = (), *, zoo: str | None = None, all: bool = False,  # noqa: A002
                batch_size: int = 16, input_size: int | None = None, method: str = "auto",
                backend: str | Sequence[str] | None = None, precision: str | Sequence[str] | None = None,
                machine: str | Sequence[str] | None = None, progress: bool = True,
                time_targets: bool | None = None, on_busy: str = "wait") -> Predictions:
        """Each model's latency at ``batch_size`` in the setup measured here with the most models at that
        batch size (or the one chosen with ``backend``, ``precision``, ``machine``), from what it is made
        of, calibrated on the models measured there: `Predictions`, one row per model with its interval.

        ``models``: registry names or model files (a list, or one comma-separated string); ``zoo``: a
        preset; ``all``: the whole registry. ``method``: ``auto`` (default: whichever of the others
        has, of those that missed no calibration model by more than 50%, the most leave-one-out
        predictions within ±10% on the calibration (`AUTO_RULE`), since a
        runtime that fuses operators is poorly summed by eager kernels), ``kernels`` (its kernels timed on this machine, summed: the
        kernels of ``models``, ``zoo`` and the calibration are timed, those of the rest of the registry
        estimated from the timed ones), ``inside`` (kernels, each corrected to its time inside a model
        from real passes of the calibration models), ``runtime`` (onnxruntime fp32, openvino fp32 and
        int8: the kernels the runtime runs as one, each timed in it, summed), ``features`` (operations by kind,
        activations, kernel calls) or ``ops`` (the line in operations). Profiles, kernel times and
        passes are added to the database (nothing measured is changed), so asking again is fast. ``time_targets``: time the kernels of ``models``
        and ``zoo`` (default), or estimate them as the rest of the registry's. ``on_busy``: while kernels are
        timed, ``wait`` for a quiet machine and time a disturbed window again (default), ``measure`` (flag
        only) or ``stop``; a prediction resting on kernels timed on a busy machine says so (``busy``)."""
        from .analysis import predictor
        from .runner.plan import ON_BUSY
        from .zoo import all_names, get, preset

        if method not in PREDICT_METHODS:
            raise UserError(f"unknown method {method!r}: choose one of {', '.join(PREDICT_METHODS)}")
        if on_busy not in ON_BUSY:
            raise UserError(f"on_busy must be one of {', '.join(ON_BUSY)}, got {on_busy!r}")
        _flags(all=all, progress=progress)
        if time_targets is not None:
            _flags(time_targets=time_targets)
        asked = list(_names(models, "models")) + (preset(zoo) if zoo else [])
        named = [get(n, input_size) for n in dict.fromkeys(asked)]
        rest = [n for n in dict.fromkeys(all_names() if all else []) if n not in {e.name for e in named}]
        entries = named + [get(n, input_size) for n in rest]
        if not entries:
            raise UserError("name the models to predict, or a zoo (--zoo NAME), or --all")
        found = self._only(self._measured(), backend=backend, precision=precision, machine=machine)
        setup, calibrating = predictor.choose_setup(found, batch_size)
        if len(calibrating) < predictor.MIN_POINTS:
            enough = sorted({b for m in found for b in m.ok})
            raise UserError(f"predict needs at least {predictor.MIN_POINTS} models measured at batch size "
                            f"{batch_size} in one setup, and {self.path} has {len(calibrating)}; run "
                            f"`dnnbench run MODEL... --batch-sizes {batch_size} --db {self.path}` first"
                            + (f" (batch sizes measured: {', '.join(map(str, enough))})" if enough else ""))
        from .profiling import predict

        with self._writable() as store:
            result = predict(store, calibrating, entries, named, setup, batch_size, method,
                             time_targets is not False, on_busy, steps=lambda what, unit: _steps(what, unit, progress),
                             say=_say_to(sys.stderr, "predict"))
        return Predictions(result, setup, batch_size, method)

    @contextlib.contextmanager
    def _writable(self):
        """The database opened to add profiles and kernel times; read-only where it cannot be written
        (then nothing is kept for the next call, and the prediction still comes)."""
        from .store import Store

        try:
            store = Store(self.path)
        except UserError:
            store = self._store()
        with store:
            yield store


@contextlib.contextmanager
def _steps(what: str, unit: str, enabled: bool):
    """A progress callback (done, total): a bar on a terminal or in Jupyter; elsewhere (a log, a pipe) a
    line on standard error at most every 10 s, since a bar there shows nothing until it ends."""
    import time

    from . import progressbar

    shown = progressbar.bar(total=None, desc=what, unit=unit, enabled=enabled, leave=False)
    last = [time.monotonic()]

    def step(done: int, total: int) -> None:
        shown.total = total
        shown.update(done - shown.n)
        if enabled and shown.disable and done < total and time.monotonic() - last[0] >= 10:
            last[0] = time.monotonic()
            print(f"dnnbench predict: {what}: {done} of {total} {unit}s", file=sys.stderr, flush=True)

    try:
        yield step
    finally:
        shown.close()


def open(path: str | os.PathLike = DEFAULT_DB) -> Results:  # noqa: A001 - dnnbench.open, as sqlite3.connect
    """The `Results` of an existing dnnbench database (read-only: it is never changed). A missing file,
    or one that is not a dnnbench database, raises `UserError`."""
    from .store import Store

    path = _path(path, "path")
    with Store(path, create=False):  # refuses what is not a dnnbench database, now rather than later
        pass
    return Results(path)


# -- answers ---------------------------------------------------------------------------------------


def _steps_words(steps: list | None) -> str:
    if steps is None:
        return ""
    measured = [s for s in steps if s.action == "measured" and s.why != "already measured"]
    lines = [f"\nMeasured {len(measured)} of {len(steps)} candidates to decide the answer:"]
    for s in steps:
        result = "" if s.passes is None else (": meets every limit" if s.passes else ": breaks a limit")
        lines.append(f"  {s.name}: {s.action}, {s.why}{result}")
    return "\n".join(lines)


def _candidates(models, zoo, backend, precision, command: str, verb: str) -> tuple[list, Setup]:
    """The candidates of ``command`` (``models`` and a ``zoo``'s, as registry entries) and the one
    setup on this machine it ``verb`` them in (one ``backend`` and ``precision``, default eager fp32)."""
    from .measure.device import machine_environment
    from .setup import machine_id
    from .zoo import get, preset

    names = list(dict.fromkeys(_names(models, "models") + (preset(zoo) if zoo else [])))
    if not names:
        raise UserError(f"{command} needs candidates: name models or a zoo (--zoo NAME)")
    one = {}
    for field, value in (("backend", backend), ("precision", precision)):
        chosen = _names(value, field)
        if len(chosen) > 1:
            raise UserError(f"{command} {verb} in one setup: give one {field}, not {', '.join(chosen)}")
        if chosen:
            one[field] = chosen[0]
    entries = [get(n) for n in names]
    setup = _runnable([Setup(**one)], _say_to(sys.stderr, "recommend"))[0]
    return entries, setup.on(setup.machine or machine_id(machine_environment("cpu")))


def _published_top1(name: str, input_size: int) -> float | None:
    """The published top-1 (%) of a zoo model's weights at that input size; None for one outside the zoo."""
    from .zoo import get, published_accuracy
    from .zoo.registry import is_user_model

    if is_user_model(name) or "[" in name:  # a user's model or weights: no published figure applies
        return None
    try:
        accuracy = published_accuracy(get(name, input_size))
    except (UserError, ValueError):
        return None
    return accuracy.top1 if accuracy else None


class _Answer(Rows):
    """Rows of candidates, those that pass first (most accurate first), each with ``passes`` and its
    ``machine``."""

    @property
    def best(self) -> dict | None:
        """The first that passes, or None."""
        return next((r for r in self if r["passes"]), None)

    @property
    def best_per_machine(self) -> dict[str, dict | None]:
        """Each machine's most accurate candidate that passes, or None where none passes there."""
        out: dict[str, dict | None] = {}
        for r in self:
            out.setdefault(r["machine"], None)
            if r["passes"] and out[r["machine"]] is None:
                out[r["machine"]] = r
        return out


class ServingAnswer(_Answer):
    """The answer of `Results.recommend_serving`: one dict per (model, setup, batching policy), those that
    meet the load first (most accurate first), with ``passes``, ``peak_qps`` (the highest rate shown to
    meet the tail limit), ``held_s`` (the longest point that met it at that rate, seconds),
    ``speed_low``/``speed_high`` (the range of its search's pass times over its point's), ``margin`` (the peak over the load), ``top1`` and ``broken``. ``best``: the first
    that passes, or None; in a fleet's database, ``best_per_machine`` and ``str()`` answer per machine."""

    def __init__(self, verdicts: list, qps: float, q: float, limit_s: float, steps: list | None = None):
        rows = [{**v.peak.to_dict(), "passes": v.ok, "top1": v.top1, "broken": v.broken,
                 "margin": (v.peak.qps / qps - 1) if v.peak.qps else None} for v in verdicts]
        super().__init__(rows, render=lambda found: _serving_answer_table(found, qps, q, limit_s) + _steps_words(steps))
        self.steps = steps



def _serving_answer_table(rows: list, qps: float, q: float, limit_s: float) -> str:
    """The answer in words: one table and answer, or one per machine where the rows span several (a
    fleet's merged database: each machine serves the load on its own)."""
    head = f"A load of {qps:g} requests/s (Poisson) with p{100 * q:g} under {limit_s * 1e3:.3g} ms"
    machines = list(dict.fromkeys(r["machine"] for r in rows))
    if len(machines) <= 1:
        return "\n".join([head, *_serving_answer_of(rows)])
    parts = [head + f", answered for each of {len(machines)} machines:"]
    for machine in machines:
        parts += ["", f"On {machine}:", *_serving_answer_of([r for r in rows if r["machine"] == machine])]
    return "\n".join(parts)


def _serving_answer_of(rows: list) -> list[str]:
    from .text import table
    from .units import format_rate

    body = [[r["model"], f"{r['backend']} {r['precision']}",
             f"batch {r['max_batch']}, wait {r['max_wait_s'] * 1e3:g} ms, {r['instances']} inst.",
             f"{r['top1']:.2f}" if r.get("top1") is not None else "-",
             format_rate(r.get("peak_qps")),
             f"{100 * r['margin']:+.0f}%" if r.get("margin") is not None else "-",
             "yes" if r["passes"] else "no: " + "; ".join(r["broken"])] for r in rows]
    best = next((r for r in rows if r["passes"]), None)
    words = (f"Answer: {best['model']} in {best['backend']} {best['precision']}, batch {best['max_batch']}, "
             f"{best['instances']} instance(s): it sustains {format_rate(best['peak_qps'])} requests/s "
             f"({100 * best['margin']:+.0f}%)" + (" [measured on a busy machine]" if best.get("disturbed") else "")
             if best else "Answer: none of the models measured under load meets it")
    return [table(["model", "setup", "policy", "top-1 (%)", "peak (req/s)", "margin", "meets it"],
                  body, right={3, 4, 5}), words]


class Recommendation(_Answer):
    """The answer of `Results.recommend`: one dict per measured (model, setup), those that pass first
    (most accurate first), with ``passes``, ``top1`` (%), ``latency_s``, ``images_per_s``,
    ``memory_bytes``, ``energy_per_image_j``, ``interpolated`` (between two measured batch sizes),
    ``broken`` (the limits it breaks, in words), ``disturbed`` and the setup's fields. ``passing``:
    only those that pass; ``best``: the first of them, or None; ``str()``: the command's answer.
    ``steps``: with ``measure``, what was done with each candidate and why (`analysis.search.Step`).
    Where the answer spans several machines, ``str()`` answers for each, and ``best_per_machine`` maps
    each machine to its best."""

    def __init__(self, passing: list, failing: list, limits, steps: list | None = None):
        from .analysis.recommend import as_json, render_per_machine

        super().__init__(as_json(passing, failing, limits),
                         render=lambda _: render_per_machine(passing, failing, limits) + _steps_words(steps))
        self.limits = limits
        self.steps = steps

    @property
    def passing(self) -> Rows:
        return Rows(r for r in self if r["passes"])



class Predictions(Rows):
    """The answer of `Results.predict`: one dict per model with ``latency_s`` (one batch) and
    ``time_per_image_s``, the interval ``low_s``..``high_s`` (of the batch's latency; it covers a model
    like the calibrated ones with probability ``coverage``), ``extrapolations`` (why the model is unlike
    them, in words), ``timed_share`` (of its kernel time that was timed rather than estimated), and for a
    measured model ``measured_latency_s`` and the leave-one-out ``error``; a model that could not be
    profiled has ``problem`` instead. ``calibration``: the fit (n, leave-one-out errors by model)."""

    def __init__(self, result: dict, setup: Setup, batch_size: int, method: str):
        calibration = result["calibration"]
        common = {**setup.to_dict(), "calibrated_on": calibration.n, "coverage": calibration.coverage}
        super().__init__([{**r, **common} for r in result["rows"]], render=self._table)
        self.calibration = calibration
        self.points = result["points"]
        self.setup, self.batch_size, self.asked = setup, batch_size, method
        self.method = calibration.method  # for ``auto``, the method it chose
        self.weighed = result.get("weighed") or list(AUTO_METHODS)  # and those it chose from

    def _table(self, rows: list) -> str:
        from .text import table
        from .units import format_seconds

        cal = self.calibration
        errors = [abs(e) for e in cal.loo_errors.values()]
        head = (f"Predicted at batch size {self.batch_size} in {self.setup.label(machine=True)}, from "
                f"{PREDICT_METHODS[self.method]}"
                + (f" (method {self.method}: of {', '.join(self.weighed)}, {AUTO_RULE})"
                   if self.asked == "auto" else "")
                + f", calibrated on the {cal.n} models measured there: leave-one-out error "
                f"median ±{cal.median_abs_error:.0%}, worst ±{max(errors):.0%}; each interval covers a model like "
                f"them {cal.coverage:.0%} of the time.")
        body = []
        for r in rows:
            if "problem" in r:
                body.append([r["model"], "", "", "", "", f"not profiled: {r['problem']}"])
                continue
            b = r["batch_size"]
            note = "; ".join(r["extrapolations"]) if r["extrapolations"] else ""
            if r.get("timed_share") is not None and 0.9 <= r["timed_share"] < 0.999:
                note = "; ".join(filter(None, [note, f"{1 - r['timed_share']:.0%} of its kernel time estimated"]))
            if r.get("busy"):
                note = "; ".join(filter(None, ["BUSY: kernels timed while other processes used the machine "
                                               f"({r['busy_share']:.0%} of its own); predict again when it is quiet",
                                               note]))
            measured = r.get("measured_latency_s")
            high = "∞" if r["high_s"] == float("inf") else format_seconds(r["high_s"] / b)
            body.append([r["model"], format_seconds(r["time_per_image_s"]),
                         f"{format_seconds(r['low_s'] / b)} to {high}",
                         format_seconds(measured / b) if measured else "",
                         f"{r['error']:+.0%}" if measured else "",
                         ("measured: predicted without itself" + ("; measured while busy" if r.get("disturbed") else ""))
                         if measured else (f"extrapolates: {note}" if r["extrapolations"] else note)])
        return head + "\n" + table(["model", "predicted per image", "interval", "measured", "error", "note"], body,
                                    right={1, 3, 4})
