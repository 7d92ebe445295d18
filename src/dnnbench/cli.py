"""The command line: argument declarations, and wiring to the library. No measurement logic here.

User errors (unknown model, bad option) print one line and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
from typing import Sequence

from . import __version__
from .errors import UserError
from .figures import FIGURES

INTERRUPTED = 130  # 128 + SIGINT, the shells' status of a command stopped by Ctrl-C


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + message
        raise UserError(f"{message} (see `{self.prog} --help`)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _model_args(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help="registry names, aliases (vgg-16), timm/<name>, or path/file.py:function")
    parser.add_argument("--zoo", metavar="NAME", help="a preset: canziani2016, culurciello2018, bianco2018, keras, mobile")
    parser.add_argument("--input-size", type=_positive_int, metavar="PX",
                        help="input side in pixels (default: each model's native size; 224 for user models)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dnnbench", description="Which vision model to deploy on this machine, measured on it.")
    parser.add_argument("--version", action="version", version=f"dnnbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("models", help="list the zoo: name, family, source library, native input size")
    p.add_argument("--zoo", metavar="NAME", help="only the models of this preset")
    p.add_argument("--json", action="store_true", help="a JSON list of objects instead of a table")

    p = sub.add_parser("inspect", help="params, MACs, FLOPs, file size, input size, published accuracy")
    _model_args(p, required=True)
    p.add_argument("--json", action="store_true", help="a JSON list of objects instead of a table")

    p = sub.add_parser("run", help="measure latency, throughput, cold start, memory and energy versus batch size "
                                   "into a resumable SQLite database")
    _model_args(p, required=True)
    p.add_argument("--batch-sizes", default="1,2,4,8,16,32,64", metavar="LIST",
                   help="comma-separated batch sizes (default: 1,2,4,8,16,32,64)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="intra-op threads (default: the cores this process may use)")
    p.add_argument("--backend", default="eager", metavar="LIST",
                   help="comma-separated runtimes to measure each model in: eager, compile, onnxruntime, openvino "
                        "(default: eager)")
    p.add_argument("--precision", default="fp32", metavar="LIST",
                   help="comma-separated precisions: fp32, bf16, fp16, int8 (default: fp32); every backend and "
                        "precision that this device can run becomes its own cells")
    p.add_argument("--channels-last", action="store_true", help="measure in the channels-last memory layout")
    p.add_argument("--machine", metavar="NAME",
                   help="the name this machine's cells go under in the database (default: its fingerprint, "
                        "e.g. amd-epyc-2c-24g-1f3a: CPU model, cores, memory, GPU)")
    p.add_argument("--db", default="dnnbench.db", metavar="PATH", help="the results database (default: dnnbench.db)")
    p.add_argument("--target-ci", type=_fraction, default=None, metavar="FRACTION",
                   help="stop a cell once the 95%% interval of its median is within this fraction of it "
                        "(default: 0.02; 0.05 with --quick)")
    p.add_argument("--max-seconds-per-cell", type=_positive_float, default=None, metavar="S",
                   help="time budget of the timed passes of one cell (default: 20; 3 with --quick)")
    p.add_argument("--max-memory", metavar="SIZE",
                   help="a cell whose worker's resident set exceeds this (e.g. 4GB) is recorded as oom, "
                        "and the model's larger batch sizes are skipped")
    p.add_argument("--timeout", type=_positive_float, metavar="S",
                   help="hard limit of one cell in seconds: past it the worker is stopped and the cell "
                        "recorded as timeout (default: 10 x the budget + 30)")
    p.add_argument("--rounds", type=_positive_int, default=None, metavar="R",
                   help="measure each cell in R fresh worker processes, minutes apart, sharing its budget; the "
                        "interval of the median then also covers how much they differ, which is what a second "
                        "sweep would see (default: 3; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="a coarse answer fast: ±5%% target, 3 s per cell, one round")
    p.add_argument("--retry-failed", action="store_true",
                   help="measure again the cells stored as oom, crashed, killed, timeout or error")
    p.add_argument("--on-busy", choices=["wait", "measure", "stop"], default="wait",
                   help="when other processes use the machine: wait (default) for it to be quiet before a cell "
                        "(up to 30 s) and time a disturbed cell once more, then flag it; measure: flag only; "
                        "stop: end the sweep (exit status 3), keeping every cell measured")

    p = sub.add_parser("export", help="every measured cell of a database as CSV or JSON")
    p.add_argument("--format", choices=["csv", "json"], default="csv", help="csv (default) or json")
    p.add_argument("--db", default="dnnbench.db", metavar="PATH", help="the results database (default: dnnbench.db)")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    p.add_argument("--force", action="store_true",
                   help="write --out even where it is an SQLite database (this one included), destroying it")

    p = sub.add_parser("report", help="every figure and finding of the two papers from a database: report.html, "
                                      "PNG/SVG figures, CSV tables")
    p.add_argument("--db", default="dnnbench.db", metavar="PATH", help="the results database (default: dnnbench.db)")
    p.add_argument("--out", default="dnnbench-report", metavar="DIR", help="output folder (default: dnnbench-report)")
    p.add_argument("--batch-size", type=_positive_int, metavar="B",
                   help="batch size of the single-batch figures (default: 16, or the measured one nearest to it)")
    p.add_argument("--max-latency", metavar="TIME", help="shade this latency limit on the Pareto figure (e.g. 50ms)")
    p.add_argument("--setup", metavar="WORDS",
                   help="the setup the per-model figures show, named by words of its fields, comma-separated "
                        "(e.g. onnxruntime,int8; default: the setup with the most cells)")
    p.add_argument("--force", action="store_true",
                   help="write the report's files even over SQLite databases of those names in --out")

    p = sub.add_parser("recommend", help="the models that meet your memory, speed, accuracy and energy limits, "
                                         "most accurate first")
    p.add_argument("--db", default="dnnbench.db", metavar="PATH", help="the results database (default: dnnbench.db)")
    p.add_argument("--max-memory", required=True, metavar="SIZE", help="peak memory limit, e.g. 2GB or 512MiB")
    speed = p.add_mutually_exclusive_group(required=True)
    speed.add_argument("--max-latency", metavar="TIME", help="latency limit of one batch, e.g. 50ms")
    speed.add_argument("--min-fps", type=_positive_float, metavar="N", help="throughput floor in images per second")
    p.add_argument("--batch-size", type=_positive_int, default=1, metavar="B", help="the batch size you will run (default 1)")
    p.add_argument("--min-top1", type=_positive_float, metavar="P", help="top-1 accuracy floor in percent")
    p.add_argument("--max-energy", type=_positive_float, metavar="J", help="energy limit in joules per image")
    p.add_argument("--backend", metavar="LIST", help="only these backends, comma-separated (default: every one measured)")
    p.add_argument("--precision", metavar="LIST", help="only these precisions, comma-separated (default: every one measured)")
    p.add_argument("--machine", metavar="NAME", help="only this machine (default: every machine in the database)")
    p.add_argument("--json", action="store_true", help="a JSON list of objects instead of a table")

    p = sub.add_parser("predict", help="predict a model's time per image on this machine from its operations, "
                                       "calibrated on the measured models")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--db", default="dnnbench.db", metavar="PATH", help="the results database (default: dnnbench.db)")
    p.add_argument("--batch-size", type=_positive_int, default=16, metavar="B", help="batch size (default 16)")
    p.add_argument("--input-size", type=_positive_int, metavar="PX", help="input side in pixels (default: native)")
    p.add_argument("--json", action="store_true", help="a JSON object instead of text")
    return parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value):  # float() reads inf and nan: no limit or budget means anything then
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {text!r}")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


# Below ±0.1% the interval is narrower than the timer's and the machine's own jitter: the cell would
# never converge and always spend its whole budget.
MIN_TARGET_CI = 0.001


def _fraction(text: str) -> float:
    value = _positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.02 (for ±2%), got {text!r}")
    if value < MIN_TARGET_CI:
        raise argparse.ArgumentTypeError(f"{text!r} is below {MIN_TARGET_CI} (±0.1%), finer than timing noise "
                                         "allows, so no cell would ever reach it: give 0.001 or more, e.g. 0.02")
    return value


# ------------------------------------------------------------------------------------------------
# commands: map arguments to library calls, render the result


def _option(flag: str, parse, text: str | None):
    """``parse(text)``, None for an option not given; a refusal names the option."""
    if text is None:
        return None
    try:
        return parse(text)
    except UserError as exc:
        raise UserError(f"{flag}: {exc}", exc.status) from None


def _resolve(models: Sequence[str], zoo: str | None, input_size: int | None):
    from .zoo import get, preset

    names = list(models)
    if zoo:
        names += preset(zoo)
    if not names:
        raise UserError("no models given: name some (resnet50 vgg-16) or pick a preset with --zoo canziani2016")
    return [get(name, input_size) for name in dict.fromkeys(names)]


def _table(headings: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headings)]

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(headings), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def cmd_models(args) -> int:
    from .zoo import all_names, get, preset

    names = preset(args.zoo) if args.zoo else all_names()
    entries = [get(n) for n in names]
    rows = [{"name": e.name, "family": e.family, "source": e.source, "input_size": e.input_size} for e in entries]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(_table(["name", "family", "source", "input (px)"],
                     [[r["name"], r["family"], r["source"], str(r["input_size"])] for r in rows], right={3}))
    return 0


def cmd_inspect(args) -> int:
    from .measure.static import static_figures

    entries = _resolve(args.models, args.zoo, args.input_size)
    results, failures = [], []
    progress = _progress(entries, "inspect")
    for entry in progress:
        progress.set_postfix_str(entry.name)
        try:
            results.append(static_figures(entry))
        except UserError as exc:
            failures.append(str(exc))
        except Exception as exc:  # a model that cannot run: report it, keep the others
            failures.append(f"model {entry.name!r} failed to build or run: {type(exc).__name__}: {exc}".splitlines()[0])
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=1))
    else:
        print(_inspect_table(results))
    for failure in failures:
        print(f"dnnbench: error: {failure}", file=sys.stderr)
    return 1 if failures else 0


def _inspect_table(results) -> str:
    columns = ["params", "macs", "file_size", "input_size", "top1", "top5", "accuracy_density"]
    sources: dict[str, int] = {}
    rows = []
    for r in results:
        d = r.as_dict()
        ref = ""
        if r.accuracy_source:
            ref = f"[{sources.setdefault(r.accuracy_source, len(sources) + 1)}]"
        rows.append([r.name, r.family, r.source] + [FIGURES[c].show(d[c]) for c in columns] + [ref or "none"])
    headings = ["name", "family", "library"] + [FIGURES[c].heading for c in columns] + ["accuracy source"]
    notes = [f"[{i}] {s}" for s, i in sources.items()]
    footer = ["", "MACs: multiply-accumulates of one image at the input size; FLOPs = 2 x MACs.",
              "Accuracy: ImageNet-1k val, single centre crop, as published by:", *notes]
    if any(r.accuracy_source is None for r in results):
        footer.append("none: no published accuracy for these weights in dnnbench's sources (never estimated).")
    return _table(headings, rows, right=set(range(3, 3 + len(columns)))) + "\n" + "\n".join(footer)


def _progress(items, what: str):
    from tqdm import tqdm

    # disable=None: shown on a terminal, silent when piped (JSON output stays clean)
    return tqdm(items, desc=what, unit="model", file=sys.stderr, disable=None, leave=False)


def cmd_run(args) -> int:
    from .measure.device import default_threads
    from .units import parse_batch_sizes, parse_size

    batch_sizes = parse_batch_sizes(args.batch_sizes)
    max_memory = _option("--max-memory", parse_size, args.max_memory)
    cores = default_threads()
    threads = args.threads or cores
    server = _early_fork_server(threads)
    try:
        return _run(args, server, batch_sizes, max_memory, threads, cores)
    finally:
        if server is not None:
            server.close()  # the sweep's, once it ran; closing again is harmless


def _run(args, server, batch_sizes, max_memory, threads: int, cores: int) -> int:
    from .measure.device import check_device
    from .run import RunConfig, Sweep
    from .setup import Setup
    from .store import Store

    device = check_device(args.device)
    entries = _resolve(args.models, args.zoo, args.input_size)
    _warn_oversubscribed(args.threads, cores)
    setups = _setups(args, device, threads)
    config = RunConfig(
        batch_sizes=tuple(batch_sizes), setups=setups,
        target_ci=args.target_ci or (0.05 if args.quick else 0.02),
        max_seconds_per_cell=args.max_seconds_per_cell or (3.0 if args.quick else 20.0),
        max_memory=max_memory, quick=args.quick, timeout_s=args.timeout, retry_failed=args.retry_failed,
        rounds=args.rounds or (1 if args.quick else 3), on_busy=args.on_busy)
    from .run.progress import RunPrinter

    printer = RunPrinter(config, sys.stderr)
    with Store(args.db) as store:
        sweep = Sweep(store, config, argv=sys.argv[1:], on_event=printer.event, fork_server=server or True)
        try:
            result = sweep.run(entries)
        except UserError:  # the machine was busy (--on-busy stop), or the disk is full: cells kept
            printer.close()
            raise
        except KeyboardInterrupt:
            printer.close()
            print(f"dnnbench: interrupted; every cell measured so far is kept in {args.db}. "
                  "Run the same command again to measure the rest.", file=sys.stderr)
            return INTERRUPTED
        printer.close()
        keys = {(e.name, e.input_size) for e in entries}
        rows = [c for c in store.cells() if (c["model"], c["input_size"]) in keys
                and Setup.of(c) in sweep.config.setups and c["batch_size"] in batch_sizes]
    print(printer.summary(rows, result))
    bad = [c for c in rows if c["status"] in ("crashed", "error")]
    return 1 if bad else 0


def _early_fork_server(threads: int):
    """The sweep's fork server, started now so that it imports torch while this process resolves the
    models and opens the database (None where another sweep is measuring: its imports would disturb
    that sweep's timings; the sweep then starts it once it holds the lock)."""
    from .run.forkserver import ForkServer
    from .run.lock import is_free
    from .run.sweep import worker_environment

    if not is_free():
        return None
    try:
        return ForkServer(worker_environment(threads))
    except OSError:
        return None  # the sweep tries again, and says why if it fails


def _setups(args, device: str, threads: int) -> tuple:
    """Every (backend, precision) asked for that this device can run, as setups of this device and
    thread count. A backend that is not installed is an error; a combination the device or backend
    cannot run is left out with its reason (an error when none is left); an emulated one is warned of."""
    from .backends import check_combination, get_backend
    from .setup import Setup

    backends, precisions = _names("--backend", args.backend), _names("--precision", args.precision)
    for backend in backends:
        get_backend(backend)  # unknown or not installed: the one-line error with the install command
    layout = "channels_last" if args.channels_last else "nchw"
    setups, refused = [], []
    for b in backends:
        for p in precisions:
            try:
                warning = check_combination(b, p, device)
            except UserError as exc:
                refused.append(str(exc))
                continue
            if warning:
                print(f"dnnbench run: warning: {b} {p}: {warning}", file=sys.stderr)
            setups.append(Setup(machine=args.machine, device=device, backend=b, precision=p, threads=threads,
                                layout=layout))
    if not setups:
        raise UserError("; ".join(refused))
    for reason in refused:
        print(f"dnnbench run: left out: {reason}", file=sys.stderr)
    return tuple(setups)


def _names(option: str, text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError(f"{option} needs at least one name")
    return list(dict.fromkeys(names))


def _warn_oversubscribed(threads: int | None, cores: int) -> None:
    if threads and threads > cores:
        print(f"dnnbench: warning: --threads {threads} is more than the {cores} cores this process may use; "
              "threads above that oversubscribe them, so every pass waits for cores and measures slower",
              file=sys.stderr)


def cmd_export(args) -> int:
    from .export import check_output, export, write_output
    from .store import Store

    if args.out:
        check_output(args.out, args.db, args.force)
    with Store(args.db, create=False) as store:
        text = export(store, args.format)
    if args.out:
        write_output(args.out, text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_report(args) -> int:
    from .analysis.recommend import Limits
    from .report import build_report
    from .store import Store
    from .units import parse_duration

    limits = None
    if args.max_latency:
        limits = Limits(max_memory=10**15, max_latency=_option("--max-latency", parse_duration, args.max_latency))
    with Store(args.db, create=False) as store:
        try:
            path = build_report(store, args.out, batch=args.batch_size, limits=limits, force=args.force,
                                setup=args.setup)
        except OSError as exc:  # disk full, read-only, a file where a folder should be
            raise UserError(f"cannot write the report into {args.out}: {exc.strerror or exc}; "
                            "choose another --out") from exc
    print(path)
    return 0


def cmd_recommend(args) -> int:
    from .analysis.data import load
    from .analysis.recommend import Limits, as_json, recommend, render
    from .store import Store
    from .units import parse_duration, parse_size

    limits = Limits(max_memory=_option("--max-memory", parse_size, args.max_memory),
                    max_latency=_option("--max-latency", parse_duration, args.max_latency),
                    min_fps=args.min_fps, batch_size=args.batch_size, min_top1=args.min_top1,
                    max_energy=args.max_energy)
    with Store(args.db, create=False) as store:
        models = load(store)
    if not models:
        raise UserError(f"{args.db} holds no measurements yet: run `dnnbench run MODEL... --db {args.db}` first")
    models = _only_setups(models, args, args.db)
    passing, failing = recommend(models, limits)
    if args.json:
        print(json.dumps(as_json(passing, failing, limits), indent=1))
    else:
        print(render(passing, failing, limits))
    return 0


def _only_setups(models, args, db) -> list:
    """The measured models whose setups pass --backend, --precision and --machine; UserError naming
    what was measured where an option matches nothing."""
    for option, field, text in (("--backend", "backend", args.backend), ("--precision", "precision", args.precision),
                                ("--machine", "machine", args.machine)):
        if text is None:
            continue
        wanted = set(_names(option, text))
        measured = sorted({getattr(m.setup, field) for m in models})
        missing = sorted(wanted - set(measured))
        if missing:
            raise UserError(f"{option} {', '.join(missing)}: not measured in {db} (measured: {', '.join(measured)})")
        models = [m for m in models if getattr(m.setup, field) in wanted]
    return models


def cmd_predict(args) -> int:
    from .analysis.data import load
    from .analysis.predict import predict
    from .measure.static import static_figures
    from .store import Store
    from .zoo import get

    entry = get(args.model, args.input_size)
    figures = static_figures(entry)
    with Store(args.db, create=False) as store:
        models = load(store)
    result = predict(models, figures.macs, args.batch_size, entry.name)
    measured = next((m.ok[args.batch_size] for m in models if m.model == entry.name and args.batch_size in m.ok), None)
    if args.json:
        print(json.dumps({"model": entry.name, "macs": figures.macs, "batch_size": args.batch_size,
                          "predicted_time_per_image_s": result.time_per_image_s, "reliable": result.reliable,
                          "unreliable_reasons": result.doubts, "fit_slope_s_per_mac": result.fit.slope,
                          "fit_intercept_s": result.fit.intercept, "fit_r2": result.fit.r2, "fit_n": result.fit.n,
                          "loo_median_abs_error": result.loo_median_abs, "loo_max_abs_error": result.loo_max_abs,
                          "measured_time_per_image_s": measured["time_per_image_s"] if measured else None}, indent=1))
        return 0
    print(_predict_text(entry.name, figures.macs, args.batch_size, result, measured))
    return 0


def _predict_text(name: str, macs: float, batch: int, result, measured: dict | None) -> str:
    from .units import format_seconds, format_significant

    fit = result.fit
    lines = [f"{name}: predicted {format_seconds(result.time_per_image_s)} per image at batch size {batch} on this "
             f"machine ({format_significant(macs / 1e9)} G-MACs per image)"]
    if result.doubts:
        lines.append(f"unreliable: {'; and '.join(result.doubts)}. Measure it instead: "
                     f"`dnnbench run {name} --batch-sizes {batch}`")
    lines.append(f"fit on {fit.n} measured models: time per image = {format_seconds(fit.slope * 1e9)} per G-MAC "
                 f"{'-' if fit.intercept < 0 else '+'} {format_seconds(abs(fit.intercept))}, R² = {fit.r2:.3f}; "
                 f"leave-one-out error: median ±{result.loo_median_abs:.0%}, worst ±{result.loo_max_abs:.0%}")
    if measured:
        lines.append(f"measured: {format_seconds(measured['time_per_image_s'])} per image")
    return "\n".join(lines)


COMMANDS = {"models": cmd_models, "inspect": cmd_inspect, "run": cmd_run, "export": cmd_export,
            "report": cmd_report, "recommend": cmd_recommend, "predict": cmd_predict}


class _Interrupts:
    """Ctrl-C as KeyboardInterrupt, remembered: an interrupt that lands inside a library's import can be
    swallowed there or resurface as another error (ImportError, RecursionError), which must still read
    as an interruption, not as a crash. A second Ctrl-C ends the process at once, silently."""

    def __init__(self):
        self.seen = False
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.seen = True
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        if self.seen:
            # objects the interrupt left half made must not print "Exception ignored ... KeyboardInterrupt"
            # when the interpreter shuts down
            hook = sys.unraisablehook
            sys.unraisablehook = lambda u: None if issubclass(u.exc_type, KeyboardInterrupt) else hook(u)


def _stdout_gone() -> int:
    # The reader of a pipe left (`dnnbench models | head -1`): what is unread stays unread. Point
    # stdout at devnull so that the interpreter's final flush does not fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141  # 128 + SIGPIPE, the status of a command ended by a closed pipe


def main(argv: Sequence[str] | None = None) -> int:
    with _Interrupts() as interrupts:
        try:
            status = _dispatch(argv)
            sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
            if interrupts.seen and status != INTERRUPTED:  # swallowed by a library: what ran may be incomplete
                raise KeyboardInterrupt
            return status
        except BrokenPipeError:
            return _stdout_gone()
        except UserError as exc:
            print(f"dnnbench: error: {exc}", file=sys.stderr)
            return exc.status
        except KeyboardInterrupt:
            print("dnnbench: interrupted", file=sys.stderr)
            return INTERRUPTED
        except Exception:
            if not interrupts.seen:
                raise
            print("dnnbench: interrupted", file=sys.stderr)
            return INTERRUPTED


def _dispatch(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if not args.command:
        build_parser().print_help()
        return 2
    return COMMANDS[args.command](args)
