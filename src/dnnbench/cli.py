"""The command line: argument declarations, and wiring to the library. No measurement logic here.

User errors (unknown model, bad option) print one line and exit with status 2, never a traceback.
The exit statuses, one table for every command (README "Exit statuses"): `EXIT_STATUSES`.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import signal
import sys
import threading
from typing import Sequence

from . import api
from ._version import __version__
from .api import DEFAULT_DB, DEFAULT_REPORT
from .errors import UserError
from .runner.plan import BATCH_SIZES, DEFAULTS, MIN_TARGET_CI, QUICK_DEFAULTS
from .runner.pairs import VERSUS_DEFAULTS
from .setup import Setup

INTERRUPTED = 130  # 128 + SIGINT, the shells' status of a command stopped by Ctrl-C
NOTHING_MEASURED = 4
SLOWER = 5  # compare --fail-above: a regression
NOTHING_COMPARED = 6
EXIT_STATUSES = {  # status: (in a word, what it means)
    0: ("done", "every cell asked for is in the database; a cell that ran out of memory or time is a result (its "
                "limit), listed as such"),
    1: ("a model failed", "a model crashed or raised (run: cells crashed or error, or a cluster's machine lost; "
                          "predict: a model that could not be predicted); every other result is kept"),
    2: ("bad input", "the one line printed names the problem and the fix (a bad option or file, a full disk "
                     "for the output); what was measured before is kept"),
    3: ("machine busy", "the machine was busy and --on-busy stop ended the work; everything measured before is kept"),
    NOTHING_MEASURED: ("nothing measured", "run: no cell asked for was measured, every one ran out of memory or "
                                           "time: raise --max-memory or --timeout, or give smaller batch sizes"),
    SLOWER: ("slower", "compare --fail-above: a cell (or, with --gate geomean, a geometric mean) is shown slower, "
                       "and a slowdown beyond the margin is not ruled out"),
    NOTHING_COMPARED: ("nothing compared", "compare: the two sides share no cell measured on both; check the "
                                           "databases and the --base/--new selections"),
    INTERRUPTED: ("interrupted", "Ctrl-C or SIGTERM; everything measured before is kept, and the same command "
                                 "again resumes"),
    141: ("output closed", "the reader of the output went away (`dnnbench models | head -1`)"),
}


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
    parser.add_argument("--zoo", metavar="NAME", help="a preset: canziani2016, culurciello2018, bianco2018, keras, mobile, calibration")
    parser.add_argument("--input-size", type=_positive_int, metavar="PX",
                        help="input side in pixels (default: each model's native size; 224 for user models)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dnnbench", description="Which vision model to deploy on this machine, measured on it.",
                     epilog="exit statuses: " + ", ".join(f"{k} {word}" for k, (word, _) in EXIT_STATUSES.items())
                     + " (README: Exit statuses)")
    parser.add_argument("--version", action="version", version=f"dnnbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _models_command(sub)
    _inspect_command(sub)
    _run_command(sub)
    _eval_command(sub)
    _export_command(sub)
    _merge_command(sub)
    _report_command(sub)
    _scenarios_command(sub)
    _compare_command(sub)
    _recommend_command(sub)
    _predict_command(sub)
    return parser


def _add_db(p) -> None:
    p.add_argument("--db", default=DEFAULT_DB, metavar="PATH", help=f"the results database (default: {DEFAULT_DB})")


def _add_json(p) -> None:
    p.add_argument("--json", action="store_true", help="a JSON list of objects instead of a table")


def _models_command(sub) -> None:
    p = sub.add_parser("models", help="list the zoo: name, family, source library, native input size")
    p.add_argument("--zoo", metavar="NAME", help="only the models of this preset")
    _add_json(p)


def _inspect_command(sub) -> None:
    p = sub.add_parser("inspect", help="params, MACs, FLOPs, file size, input size, published accuracy")
    _model_args(p, required=True)
    p.add_argument("--db", metavar="PATH",
                   help="a database where `dnnbench eval` stored accuracy: the measured top-1 goes beside the published")
    _add_json(p)


def _run_command(sub) -> None:
    p = sub.add_parser("run", help="measure latency, throughput, cold start, memory and energy versus batch size "
                                   "into a resumable SQLite database")
    _model_args(p, required=True)
    p.add_argument("--batch-sizes", metavar="LIST",
                   help=f"comma-separated batch sizes (default: {','.join(map(str, BATCH_SIZES))})")
    p.add_argument("--device", help=f"cpu, cuda or cuda:N (default: {Setup.device})")
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="intra-op threads (default: the cores this process may use)")
    p.add_argument("--backend", metavar="LIST",
                   help="comma-separated runtimes to measure each model in: eager, compile, onnxruntime, openvino "
                        f"(default: {Setup.backend})")
    p.add_argument("--precision", metavar="LIST",
                   help=f"comma-separated precisions: fp32, bf16, fp16, int8 (default: {Setup.precision}); every backend and "
                        "precision that this device can run becomes its own cells")
    p.add_argument("--channels-last", action="store_true", help="measure in the channels-last memory layout")
    p.add_argument("--weights", metavar="FILE",
                   help="measure with these weights (.safetensors or .pth/.pt state dict, never unpickled as code) "
                        "instead of random ones; a classifier of another size resizes the head; cells go under "
                        "'MODEL [FILE]'")
    p.add_argument("--machine", metavar="NAME",
                   help="the name this machine's cells go under in the database (default: its fingerprint, "
                        "e.g. amd-epyc-2c-24g-1f3a: CPU model, cores, memory, GPU)")
    _add_db(p)
    p.add_argument("--target-ci", type=_fraction, default=None, metavar="FRACTION",
                   help="stop a cell once the 95%% interval of its median is within this fraction of it "
                        f"(default: {DEFAULTS['target_ci']}; {QUICK_DEFAULTS['target_ci']} with --quick)")
    p.add_argument("--max-seconds-per-cell", type=_positive_float, default=None, metavar="S",
                   help="time budget of the timed passes of one cell (default: "
                        f"{DEFAULTS['max_seconds_per_cell']:g}; {QUICK_DEFAULTS['max_seconds_per_cell']:g} with --quick)")
    p.add_argument("--max-memory", metavar="SIZE",
                   help="a cell whose worker's resident set exceeds this (e.g. 4GB) is recorded as oom, "
                        "and the model's larger batch sizes are skipped")
    p.add_argument("--timeout", type=_positive_float, metavar="S",
                   help="hard limit of one cell in seconds: past it the worker is stopped and the cell "
                        "recorded as timeout (default: 10 x the budget + 30)")
    p.add_argument("--rounds", type=_positive_int, default=None, metavar="R",
                   help="measure each cell in R fresh worker processes, minutes apart, sharing its budget; the "
                        "interval of the median then also covers how much they differ, which is what a second "
                        f"sweep would see (default: {DEFAULTS['rounds']}; {QUICK_DEFAULTS['rounds']} with --quick)")
    p.add_argument("--quick", action="store_true", help="a coarse answer fast: ±5%% target, 3 s per cell, in two short rounds")
    p.add_argument("--retry-failed", action="store_true",
                   help="measure again the cells stored as oom, crashed, killed, timeout or error")
    p.add_argument("--on-busy", choices=["wait", "measure", "stop"], default="wait",
                   help="when other processes use the machine: wait (default) for it to be quiet before a cell "
                        "(up to 30 s) and time a disturbed cell once more, then flag it; measure: flag only; "
                        "stop: end the sweep (exit status 3), keeping every cell measured")

    p.add_argument("--versus", metavar="FIELD=VALUE",
                   help="measure each model against another model or setup (model=, backend=, precision=, layout=, "
                        "threads=; comma-separated), the two in worker processes that take turns on the machine "
                        "every fifth of a second, so that the machine's drift cancels; prints their comparison "
                        f"(batch size 1 unless --batch-sizes, {VERSUS_DEFAULTS['rounds']} rounds, "
                        f"±{100 * VERSUS_DEFAULTS['target_ci']:g}%% target, {VERSUS_DEFAULTS['max_seconds_per_cell']:g} s "
                        "a cell and round)")

    serving = p.add_argument_group(
        "serving under load (--scenario server)",
        "requests arrive as a Poisson process (MLPerf's Server scenario); each model, setup and batching policy "
        "gets the highest rate whose tail latency has its 95%% upper bound under the limit, or the rates of --qps")
    serving.add_argument("--scenario", choices=SCENARIOS, default="single-stream",
                         help="single-stream (default): one batch at a time, the papers' figures; offline: the same "
                              "sweep, answered as the best throughput; multi-stream: queries of 8 images one at a "
                              f"time, {MULTI_STREAM_PASSES} passes at least to bound their p99; server: under load")
    tail = serving.add_mutually_exclusive_group()
    tail.add_argument("--p99", metavar="TIME", help="the limit of the 99th percentile of latency, e.g. 50ms")
    tail.add_argument("--p90", metavar="TIME", help="the limit of the 90th percentile of latency")
    serving.add_argument("--qps", metavar="LIST", help="measure these rates (requests per second, comma-separated) "
                                                       "instead of searching the highest")
    serving.add_argument("--max-batch", metavar="LIST", default="1",
                         help="requests batched together, comma-separated to compare policies (default 1)")
    serving.add_argument("--max-wait", metavar="TIME", default="0ms",
                         help="how long the oldest request may wait for its batch to fill (default 0ms)")
    serving.add_argument("--instances", metavar="LIST", default="1",
                         help="copies of the model serving one queue, comma-separated to compare (default 1)")
    serving.add_argument("--max-seconds-per-point", type=_positive_float, default=10.0, metavar="S",
                         help="the longest one rate is served; it stops sooner once its percentile is decided "
                              "(default 10)")
    serving.add_argument("--max-seconds-per-search", type=_positive_float, default=120.0, metavar="S",
                         help="the longest a peak search takes, the model's build included; then it reports the rates "
                              "it bracketed (default 120)")

    p.add_argument("--cluster", metavar="ADDRESS",
                   help="measure on every node of this Ray cluster (HEAD:6379, or auto), each on its own hardware, "
                        "streaming into --db here; a node's cells go under its Ray label dnnbench-machine, else its "
                        "fingerprint (needs pip install 'dnnbench[cluster]' here and on the nodes)")
    p.add_argument("--machines", metavar="LIST",
                   help="with --cluster: only these nodes, by machine name, host name or address, comma-separated")


def _eval_command(sub) -> None:
    p = sub.add_parser("eval", help="top-1 and top-5 accuracy on your labelled images, with your weights, in any "
                                    "setup, stored in the database")
    _model_args(p, required=True)
    p.add_argument("--data", required=True, metavar="DIR",
                   help="a folder of class sub-folders (WordNet ids, output indices, or your own class names), or "
                        "of images with a labels.csv (file,label)")
    p.add_argument("--labels", metavar="FILE", help="the labels file (CSV: file,label), if not DIR/labels.csv")
    p.add_argument("--weights", metavar="FILE",
                   help="a .safetensors or .pth/.pt state dict (never unpickled as code); default: the torchvision "
                        "cache's file, if on disk")
    p.add_argument("--backend", metavar="LIST", help=f"runtimes, comma-separated (default: {Setup.backend})")
    p.add_argument("--precision", metavar="LIST", help=f"precisions, comma-separated (default: {Setup.precision})")
    p.add_argument("--device", help=f"cpu, cuda or cuda:N (default: {Setup.device})")
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="intra-op threads (default: the cores this process may use)")
    p.add_argument("--machine", metavar="NAME", help="the name the results go under (default: this machine's fingerprint)")
    p.add_argument("--crop-pct", type=_positive_float, metavar="F", help="centre crop over resize, e.g. 0.875 (default: "
                                                                   "the model's own)")
    p.add_argument("--batch-size", type=_positive_int, default=32, metavar="B", help="images per pass (default 32)")
    p.add_argument("--limit", type=_positive_int, metavar="N", help="only the first N images, spread over the classes")
    p.add_argument("--workers", type=_positive_int, metavar="N",
                   help="data-loading processes (default: the cores this process may use, at most 4)")
    _add_db(p)
    _add_json(p)


def _export_command(sub) -> None:
    p = sub.add_parser("export", help="every measured cell of a database as CSV or JSON")
    p.add_argument("--format", choices=["csv", "json"], default="csv", help="csv (default) or json")
    _add_db(p)
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    p.add_argument("--force", action="store_true",
                   help="write --out even where it is an SQLite database (this one included), destroying it")


def _merge_command(sub) -> None:
    p = sub.add_parser("merge", help="merge databases measured on other machines into one (read, never written); "
                                     "merging again adds nothing")
    p.add_argument("sources", nargs="+", metavar="DB", help="the databases to merge")
    p.add_argument("--into", required=True, metavar="PATH", help="the database to merge them into (created if absent)")
    p.add_argument("--json", action="store_true", help="what was merged as a JSON object")


def _compare_command(sub) -> None:
    p = sub.add_parser("compare", help="the same cells measured twice (two databases, setups, machines or "
                                       "versions): each change with its 95% interval, a verdict, a CI gate")
    p.add_argument("base", metavar="BASE.db", help="the baseline database")
    p.add_argument("new", nargs="?", metavar="NEW.db", help="the database measured since (default: BASE.db, "
                                                             "with --base and --new selecting each side)")
    p.add_argument("--base", dest="base_where", metavar="FIELD=VALUE,...",
                   help="the baseline's cells: backend=eager, machine=NAME, model=M, run=N, torch=2.14, ...")
    p.add_argument("--new", dest="new_where", metavar="FIELD=VALUE,...", help="the new side's cells, likewise")
    p.add_argument("--margin", default="5%", metavar="PCT",
                   help="a change smaller than this is the same (default 5%%)")
    p.add_argument("--fail-above", metavar="PCT",
                   help="exit with status 5 when a change is shown slower and a slowdown beyond PCT is not ruled "
                        "out (sets the margin)")
    p.add_argument("--gate", choices=["cell", "geomean"], default="cell",
                   help="with --fail-above: judge each cell (default) or each geometric mean")
    p.add_argument("--report", metavar="DIR", help="also write compare.html (a figure of every ratio and its "
                                                   "interval), its PNG/SVG and compare.csv into DIR")
    p.add_argument("--force", action="store_true", help="with --report: write over SQLite databases of those names")
    _add_json(p)


def _percent(text: str) -> float:
    value = text.strip()
    if not value.endswith("%"):
        raise UserError(f"give a percentage with its unit, e.g. 5%, got {text!r}")
    try:
        number = float(value[:-1])
    except ValueError:
        raise UserError(f"give a percentage, e.g. 5%, got {text!r}") from None
    if not 0 < number < 100:
        raise UserError(f"a margin is above 0% and below 100%, got {text!r}")
    return number / 100


def _finite(rows: list[dict]) -> list[dict]:
    """JSON has no infinity: an unbounded interval's end is null."""
    return [{k: None if isinstance(v, float) and math.isinf(v) else v for k, v in r.items()} for r in rows]


def cmd_compare(args) -> int:
    margin = _option("--fail-above", _percent, args.fail_above) or _option("--margin", _percent, args.margin)
    if args.fail_above and args.margin != "5%":
        raise UserError("--fail-above sets the margin: leave out --margin")
    found = api.compare(args.base, args.new, base_where=args.base_where, new_where=args.new_where, margin=margin)
    if args.json:
        _json({"margin": margin, "cells": _finite(found.to_dicts()), "geomeans": _finite(found.geomeans.to_dicts()),
               "only_base": found.only_base, "only_new": found.only_new, "warnings": found.warnings})
    else:
        print(found)
    if args.report:
        page = found.report(args.report, force=args.force)
        print(f"dnnbench: the comparison's page: {page}", file=sys.stderr)
    if not any(r["ratio"] is not None for r in found):
        print(f"dnnbench: {EXIT_STATUSES[NOTHING_COMPARED][1].removeprefix('compare: ')}", file=sys.stderr)
        return NOTHING_COMPARED
    if args.fail_above:
        slower = found.regressions(args.gate)
        if slower:
            what = "cells" if args.gate == "cell" else "geometric means"
            print(f"dnnbench: {len(slower)} {what} slower beyond {args.fail_above}", file=sys.stderr)
            return SLOWER
    return 0


def _scenarios_command(sub) -> None:
    p = sub.add_parser("scenarios", help="MLPerf's four scenarios per model and setup from a database: "
                                         "single-stream p90, multi-stream p99, offline throughput, server peak")
    _add_db(p)
    _add_json(p)


def _report_command(sub) -> None:
    p = sub.add_parser("report", help="every figure and finding of the two papers from a database: report.html, "
                                      "PNG/SVG figures, CSV tables")
    _add_db(p)
    p.add_argument("--out", default=DEFAULT_REPORT, metavar="DIR", help=f"output folder (default: {DEFAULT_REPORT})")
    p.add_argument("--batch-size", type=_positive_int, metavar="B",
                   help="batch size of the single-batch figures (default: 16, or the measured one nearest to it)")
    p.add_argument("--max-latency", metavar="TIME", help="shade this latency limit on the Pareto figure (e.g. 50ms)")
    p.add_argument("--setup", metavar="WORDS",
                   help="the setup the per-model figures show, named by words of its fields, comma-separated "
                        "(e.g. onnxruntime,int8; default: the setup with the most cells)")
    p.add_argument("--force", action="store_true",
                   help="write the report's files even over SQLite databases of those names in --out")


def _recommend_command(sub) -> None:
    p = sub.add_parser("recommend", help="the models that meet your memory, speed, accuracy and energy limits, "
                                         "most accurate first")
    p.add_argument("models", nargs="*", metavar="MODEL", help="with --measure: the candidates (registry names, aliases, "
                                                            "timm/<name>, path/file.py:function)")
    _add_db(p)
    p.add_argument("--max-memory", metavar="SIZE", help="peak memory limit, e.g. 2GB or 512MiB (with --qps: optional)")
    speed = p.add_mutually_exclusive_group()
    speed.add_argument("--max-latency", metavar="TIME", help="latency limit of one batch, e.g. 50ms")
    speed.add_argument("--min-fps", type=_positive_float, metavar="N", help="throughput floor in images per second")
    speed.add_argument("--p99", metavar="TIME", help="with --qps: the limit of the 99th percentile of latency")
    speed.add_argument("--p90", metavar="TIME", help="with --qps: the limit of the 90th percentile of latency")
    p.add_argument("--qps", type=_positive_float, metavar="N",
                   help="a load of N requests per second (Poisson): the answer among what `run --scenario server` "
                        "measured, with its setup and batching policy; needs --p99 or --p90")
    p.add_argument("--batch-size", type=_positive_int, default=1, metavar="B", help="the batch size you will run (default 1)")
    p.add_argument("--min-top1", type=_positive_float, metavar="P", help="top-1 accuracy floor in percent")
    p.add_argument("--max-energy", type=_positive_float, metavar="J", help="energy limit in joules per image")
    p.add_argument("--backend", metavar="LIST", help="only these backends, comma-separated (default: every one measured)")
    p.add_argument("--precision", metavar="LIST", help="only these precisions, comma-separated (default: every one measured)")
    p.add_argument("--machine", metavar="NAME", help="only this machine (default: every machine in the database)")
    p.add_argument("--measure", action="store_true",
                   help="answer among the candidates (MODEL..., --zoo) on this machine, measuring only those that "
                        "decide the answer: most accurate first, skipping those the prediction rules out")
    p.add_argument("--zoo", metavar="NAME", help="with --measure: a preset's models as candidates")
    p.add_argument("--max-batch", type=_positive_int, default=1, metavar="N",
                   help="with --qps --measure: the batching policy served, requests batched together (default 1)")
    p.add_argument("--max-wait", default="0ms", metavar="TIME",
                   help="with --qps --measure: how long the oldest request may wait for its batch (default 0ms)")
    p.add_argument("--quick", action="store_true", help="with --measure: measure with run's quick budgets")
    p.add_argument("--on-busy", choices=["wait", "measure", "stop"], default="wait",
                   help="with --measure: what to do when other processes use the machine, as run's and predict's "
                        "--on-busy (default: wait)")
    _add_json(p)


def _predict_command(sub) -> None:
    p = sub.add_parser("predict", help="predict models' latency on a measured setup from their kernels, "
                                       "calibrated on the models measured there")
    p.add_argument("models", nargs="*", metavar="MODEL", help="registry names, aliases, timm/<name>, or path/file.py:function")
    p.add_argument("--zoo", metavar="NAME", help="a preset: canziani2016, culurciello2018, bianco2018, keras, mobile, calibration")
    p.add_argument("--all", action="store_true", help="every model of the registry")
    _add_db(p)
    p.add_argument("--batch-size", type=_positive_int, default=16, metavar="B", help="batch size (default 16)")
    p.add_argument("--input-size", type=_positive_int, metavar="PX", help="input side in pixels (default: native)")
    p.add_argument("--method", choices=list(api.PREDICT_METHODS), default="auto",
                   help="auto: whichever of the others has " + api.AUTO_RULE.replace("%", "%%") + " (default); "
                        "kernels: each kernel timed on this machine, summed (with --all, the kernels of "
                        "models not named or in --zoo are estimated from the timed ones); inside: kernels, each "
                        "corrected to its time inside a model by real passes of the calibration models (kept); "
                        "runtime: the kernels onnxruntime fp32 or openvino fp32 / int8 runs as one (a layer with the "
                        "activations and residual addition it fuses), each timed in it, summed; features: operations by "
                        "kind, activations, kernel calls; ops: a line in operations")
    p.add_argument("--backend", metavar="LIST", help="calibrate on this backend's cells (default: the setup with the "
                                                       "most models measured at the batch size)")
    p.add_argument("--precision", metavar="LIST", help="calibrate on this precision's cells")
    p.add_argument("--machine", metavar="NAME", help="calibrate on this machine's cells")
    p.add_argument("--on-busy", choices=["wait", "measure", "stop"], default="wait",
                   help="when other processes use the machine while kernels are timed: wait (default) up to 30 s "
                        "for quiet and time a disturbed window once more, then flag the predictions resting on it; "
                        "measure: flag only; stop: end (exit status 3), keeping every kernel timed")
    _add_json(p)


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


def _json(value) -> None:
    print(json.dumps(value, indent=1))


def cmd_models(args) -> int:
    found = api.models(zoo=args.zoo)
    if args.json:
        _json(found.to_dicts())
    else:
        print(found)
    return 0


def cmd_inspect(args) -> int:
    found = api.inspect(args.models, zoo=args.zoo, input_size=args.input_size, errors="skip", db=args.db)
    if args.json:
        _json(found.to_dicts())
    else:
        print(found)
    for failure in found.failures:
        print(f"dnnbench: error: {failure}", file=sys.stderr)
    return 1 if found.failures else 0


_SINGLE_STREAM_ONLY = ("versus", "batch_sizes", "target_ci", "max_seconds_per_cell", "max_memory", "timeout", "rounds", "quick",
                       "retry_failed", "cluster", "machines", "channels_last")
_SERVER_ONLY = {"p99": None, "p90": None, "qps": None, "max_batch": "1", "max_wait": "0ms", "instances": "1",
                "max_seconds_per_point": 10.0, "max_seconds_per_search": 120.0}


def _whole_numbers(text: str) -> list[int]:
    try:
        values = [int(v) for v in _list(text)]
    except ValueError:
        raise UserError(f"expected whole numbers separated by commas, got {text!r}") from None
    return values


def _rates(text: str) -> list[float]:
    try:
        return [float(v) for v in _list(text)]
    except ValueError:
        raise UserError(f"expected requests per second separated by commas, got {text!r}") from None


def cmd_serve(args) -> int:
    given = [f"--{name.replace('_', '-')}" for name in _SINGLE_STREAM_ONLY if getattr(args, name) not in (None, False)]
    if given:
        raise UserError(f"{', '.join(given)} belong to the single-stream scenario: leave them out with --scenario "
                        "server")
    try:
        served = api.serve(args.models, zoo=args.zoo, p99=args.p99, p90=args.p90,
                           qps=_option("--qps", _rates, args.qps),
                           max_batch=_option("--max-batch", _whole_numbers, args.max_batch), max_wait=args.max_wait,
                           instances=_option("--instances", _whole_numbers, args.instances),
                           backend=_option("--backend", _list, args.backend),
                           precision=_option("--precision", _list, args.precision), device=args.device,
                           threads=args.threads, machine=args.machine, input_size=args.input_size,
                           weights=args.weights, db=args.db, max_seconds_per_point=args.max_seconds_per_point,
                           max_seconds_per_search=args.max_seconds_per_search,
                           on_busy=args.on_busy, argv=sys.argv[1:])
    except KeyboardInterrupt:
        print(f"dnnbench: interrupted; every point measured so far is kept in {args.db}", file=sys.stderr)
        return INTERRUPTED
    print(served)
    if any(p["status"] != "ok" for p in served):
        return 1
    return 0 if any(p["status"] == "ok" for p in served) else NOTHING_MEASURED


SCENARIOS = ["single-stream", "offline", "multi-stream", "server"]
MULTI_STREAM_PASSES = 299  # the fewest passes that bound a p99 (measure/tails.py)


def _multi_stream_batch(given: str | None) -> str:
    from .analysis.scenarios import MULTI_STREAM_SAMPLES

    if given not in (None, str(MULTI_STREAM_SAMPLES)):
        raise UserError(f"the multi-stream scenario issues queries of {MULTI_STREAM_SAMPLES} images: leave out "
                        f"--batch-sizes {given}")
    return str(MULTI_STREAM_SAMPLES)


_NOT_VERSUS = ("zoo", "quick", "max_memory", "timeout", "retry_failed", "cluster", "machines", "weights")


def cmd_versus(args) -> int:
    given = [f"--{name.replace('_', '-')}" for name in _NOT_VERSUS if getattr(args, name) not in (None, False)]
    if args.scenario != "single-stream":
        given.append("--scenario")
    if given:
        raise UserError(f"{', '.join(given)} cannot go with --versus: leave them out")
    for name in ("backend", "precision"):
        if len(_option(f"--{name}", _list, getattr(args, name)) or []) > 1:
            raise UserError(f"--versus measures one base setup: give one --{name}, and the other in --versus")
    try:
        found = api.versus(args.models, args.versus, batch_sizes=args.batch_sizes or 1, backend=args.backend,
                           precision=args.precision, device=args.device, threads=args.threads,
                           channels_last=args.channels_last, machine=args.machine, input_size=args.input_size,
                           db=args.db, rounds=args.rounds, target_ci=args.target_ci,
                           max_seconds_per_cell=args.max_seconds_per_cell, on_busy=args.on_busy,
                           argv=sys.argv[1:])
    except KeyboardInterrupt:
        print(f"dnnbench: interrupted; every round measured so far is kept in {args.db}", file=sys.stderr)
        return INTERRUPTED
    print(found)
    if not any(r["ratio"] is not None for r in found):
        print(f"dnnbench: {EXIT_STATUSES[NOTHING_MEASURED][1].removeprefix('run: ')}", file=sys.stderr)
        return NOTHING_MEASURED
    return 1 if any(r["ratio"] is None for r in found) else 0


def cmd_run(args) -> int:
    from .units import parse_size

    if args.scenario == "server":
        return cmd_serve(args)
    if args.versus:
        return cmd_versus(args)
    given = [f"--{name.replace('_', '-')}" for name, default in _SERVER_ONLY.items() if getattr(args, name) != default]
    if given:
        raise UserError(f"{', '.join(given)} belong to the server scenario: add --scenario server")
    multi = args.scenario == "multi-stream"
    batch_sizes = _multi_stream_batch(args.batch_sizes) if multi else args.batch_sizes
    try:
        results = api.run(
            args.models, zoo=args.zoo, input_size=args.input_size, batch_sizes=batch_sizes,
            min_samples=MULTI_STREAM_PASSES if multi else None,
            backend=_option("--backend", _list, args.backend), precision=_option("--precision", _list, args.precision),
            device=args.device, threads=args.threads,
            channels_last=args.channels_last, machine=args.machine, db=args.db, quick=args.quick,
            target_ci=args.target_ci, max_seconds_per_cell=args.max_seconds_per_cell,
            max_memory=_option("--max-memory", parse_size, args.max_memory), timeout=args.timeout,
            rounds=args.rounds, retry_failed=args.retry_failed, on_busy=args.on_busy, weights=args.weights,
            cluster=args.cluster, machines=_option("--machines", _list, args.machines), argv=sys.argv[1:])
    except KeyboardInterrupt:
        print(f"dnnbench: interrupted; every cell measured so far is kept in {args.db}. "
              "Run the same command again to measure the rest.", file=sys.stderr)
        return INTERRUPTED
    print(results.last_run)
    if args.scenario != "single-stream":
        print()
        print(_scenarios_of(results, {c["model"] for c in results.last_run.cells}))
    if results.last_run.broken or results.last_run.lost:
        return 1
    if not any(c["status"] in ("ok", "untimed") for c in results.last_run.cells):
        print(f"dnnbench: {EXIT_STATUSES[NOTHING_MEASURED][1].removeprefix('run: ')}", file=sys.stderr)
        return NOTHING_MEASURED
    return 0


def cmd_eval(args) -> int:
    rows = api.evaluate(args.models, args.data, zoo=args.zoo, weights=args.weights, labels=args.labels,
                        backend=_option("--backend", _list, args.backend),
                        precision=_option("--precision", _list, args.precision), device=args.device,
                        threads=args.threads, machine=args.machine, input_size=args.input_size,
                        crop_pct=args.crop_pct, batch_size=args.batch_size, limit=args.limit, workers=args.workers,
                        db=args.db)
    if args.json:
        _json(rows.to_dicts())
    else:
        print(rows)
    return 0


def cmd_export(args) -> int:
    results = api.open(args.db)
    if args.out:
        results.export(args.format, out=args.out, force=args.force)
    else:
        sys.stdout.write(results.export(args.format))
    return 0


def cmd_merge(args) -> int:
    merged = api.merge(args.sources, args.into)
    if args.json:
        _json(merged.to_dict())
    else:
        print(merged)
    return 0


def cmd_scenarios(args) -> int:
    rows = api.open(args.db).scenarios
    if args.json:
        _json(rows.to_dicts())
    else:
        print(rows)
    return 0


def _scenarios_of(results, models: set) -> str:
    """The scenarios table of ``models`` alone."""
    return str(results.scenarios.where(lambda r: r.model in models))


def cmd_report(args) -> int:
    results = api.open(args.db)
    print(results.report(args.out, batch_size=args.batch_size,
                         max_latency=_option("--max-latency", _duration, args.max_latency), setup=args.setup,
                         force=args.force))
    return 0


def _duration(text: str) -> float:
    from .units import parse_duration

    return parse_duration(text)


def cmd_recommend(args) -> int:
    from .units import parse_size

    if args.qps is not None or args.p99 or args.p90:
        if args.qps is None or not (args.p99 or args.p90):
            raise UserError("a load is --qps N with its tail limit --p99 TIME (or --p90 TIME)")
        results = api.Results(args.db) if args.measure else api.open(args.db)  # --measure may start the database
        answer = results.recommend_serving(
            args.qps, p99=args.p99, p90=args.p90, max_memory=_option("--max-memory", parse_size, args.max_memory),
            **{k: _option(f"--{k}", _list, getattr(args, k)) for k in ("backend", "precision", "machine")},
            models=args.models, zoo=args.zoo, measure=args.measure,
            max_batch=args.max_batch,
            max_wait=args.max_wait, progress=not args.json, on_busy=args.on_busy)
        if args.json:
            _json(answer.to_dicts())
        else:
            print(answer)
        return 0
    if args.max_batch != 1 or args.max_wait != "0ms":
        raise UserError("--max-batch and --max-wait are the batching policy of a load: give --qps N --p99 TIME "
                        "--measure")
    if args.max_memory is None:
        raise UserError("give the memory limit: --max-memory SIZE, e.g. 2GB")
    if args.max_latency is None and args.min_fps is None:
        raise UserError("give a speed limit: --max-latency TIME or --min-fps N (or a load: --qps N --p99 TIME)")
    results = api.Results(args.db) if args.measure else api.open(args.db)  # --measure may start the database
    answer = results.recommend(
        max_memory=_option("--max-memory", parse_size, args.max_memory),
        max_latency=_option("--max-latency", _duration, args.max_latency), min_fps=args.min_fps,
        batch_size=args.batch_size, min_top1=args.min_top1, max_energy=args.max_energy,
        **{k: _option(f"--{k}", _list, getattr(args, k)) for k in ("backend", "precision", "machine")},
        models=args.models, zoo=args.zoo, measure=args.measure, quick=args.quick, progress=not args.json,
        on_busy=args.on_busy)
    if args.json:
        _json(answer.to_dicts())
    else:
        print(answer)
    return 0


def _list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError("needs at least one name")
    return names


def cmd_predict(args) -> int:
    predicted = api.open(args.db).predict(args.models, zoo=args.zoo, all=args.all, batch_size=args.batch_size,
                                          input_size=args.input_size, method=args.method, backend=args.backend,
                                          precision=args.precision, machine=args.machine, progress=not args.json,
                                          on_busy=args.on_busy)
    if args.json:
        _json(predicted.to_dicts())
    else:
        print(predicted)
    return 0


COMMANDS = {"models": cmd_models, "inspect": cmd_inspect, "run": cmd_run, "eval": cmd_eval, "export": cmd_export,
            "merge": cmd_merge, "report": cmd_report, "scenarios": cmd_scenarios, "compare": cmd_compare, "recommend": cmd_recommend, "predict": cmd_predict}


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


_CANNOT_WRITE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}


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
        except OSError as exc:
            if exc.filename is not None or exc.errno not in _CANNOT_WRITE:
                raise
            # the output itself could not be written (`> /dev/full`, a full disk, a quota)
            _stdout_gone()
            print(f"dnnbench: error: cannot write the output: {exc.strerror}; free some space or write it "
                  "elsewhere (--out FILE where the command has it)", file=sys.stderr)
            return 2
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
