"""How well `dnnbench predict` predicts latency: on this machine, and on timm's published CPU benchmark.

Part 1, this machine. A database holds the calibration models (``--calibrate``: a zoo preset, or a
list chosen to span the families: dense, grouped and depthwise convolution, attention) and others,
measured in one setup at the batch sizes given (e.g. `dnnbench run MODEL... --batch-sizes 1,16
--rounds 3 --db measured.db`). For each batch size, every method is calibrated on the calibration
models only and predicts the others, whose measured latency is then the check: the share within
±10% and ±20%, the median and worst error, Spearman's rank correlation, the share inside its
interval, and the share within ±10% among the targets whose truth is steady (their rounds' medians
within 1.10x of each other: on a shared host a memory-bound model's speed moves with the neighbours'
memory traffic, and no prediction is closer than its truth; `interleaved_truth.py` takes a truth that
the host's drift moves less). ``kernels`` times the others' kernels
too (as `dnnbench predict MODEL` does); ``kernels-estimated`` times only the calibration's kernels
and estimates every other kernel from them (as `predict --zoo/--all` does);
``inside`` multiplies each kernel's time alone by how much slower or faster kernels of its operator,
kind and size ran inside real passes of the calibration models (`measure.kernels.KernelClock`).

Part 2, machine-independent: timm's CPU benchmark (batch 1, i9-10940X, torch.compile). Fit on a
random half of its models, predict the other half, over several random halves: the line in timm's
GMACs, timm's GMACs + activations (its ``infer_macts``) + parameters, and dnnbench's own features
(profiled here, at each model's benchmark resolution) for a random sample of the models.

    .venv/bin/python benchmarks/predict_accuracy.py --db measured.db --batch-sizes 1,16 [--calibrate M1,M2,...]
        [--timm-sample 400] [--dump FILE]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from dnnbench.analysis import AUTO_RULE, predictor  # noqa: E402
from dnnbench.backends import runtime_kernels  # noqa: E402
from dnnbench.analysis.data import load  # noqa: E402
from dnnbench.measure.profile import replayable  # noqa: E402
from dnnbench.profiling import in_model, kernel_times, profiles  # noqa: E402
from dnnbench.store import Store  # noqa: E402
from dnnbench.zoo import preset  # noqa: E402

TIMM_CSV = ROOT.parent / "shared" / "refdata" / "timm_benchmark_infer_fp32_nchw_pt240_cpu_i9_10940x_dynamo.csv"


STEADY = 1.10  # a target whose rounds' medians lie within this factor of each other has a steady truth


def _scores(predicted: list[float], measured: list[float], rows: list[dict] | None = None,
            steady: list[bool] | None = None) -> dict:
    errors = [(p - m) / m for p, m in zip(predicted, measured, strict=True)]
    out = predictor.summary(errors)
    out["spearman"] = predictor.spearman(predicted, measured)
    if rows is not None:
        out["covered"] = sum(r["low_s"] <= m <= r["high_s"] for r, m in zip(rows, measured, strict=True)) / len(rows)
    if steady is not None:
        kept = [e for e, ok in zip(errors, steady, strict=True) if ok]
        out["steady"] = (len(kept), sum(abs(e) <= 0.10 for e in kept) / len(kept) if kept else float("nan"))
    return out


def _line(name: str, s: dict) -> str:
    covered = f"{s['covered']:.0%}" if "covered" in s else ""
    steady = f"{s['steady'][0]}: {s['steady'][1]:.0%}" if "steady" in s else ""
    return (f"| {name} | {s['n']} | {s['within_10']:.0%} | {s['within_20']:.0%} | ±{s['median_abs']:.1%} | "
            f"±{s['max_abs']:.0%} | {s['spearman']:.3f} | {covered} | {steady} |")


HEAD = ("| method | models | within ±10% | within ±20% | median error | worst error | Spearman | inside its interval "
        f"| steady truth (rounds within {STEADY:.2f}x): models, within ±10% |\n|---|---|---|---|---|---|---|---|---|")


def coverage_band(n: int, targets: int, tail: float = 0.05) -> tuple[float, float]:
    """The share of ``targets`` like models inside their intervals that one calibration of ``n`` holds,
    90% of the time (5% in each tail): an interval from the least to the largest of n exchangeable
    leave-one-out errors holds a new model with a probability that is itself random, Beta(n - 1, 2)
    (mean (n - 1) / (n + 1), the promise), so the count of ``targets`` inside is beta-binomial."""
    a, b = n - 1, 2

    def log_beta(x, y):
        return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)

    pmf = [math.exp(math.lgamma(targets + 1) - math.lgamma(k + 1) - math.lgamma(targets - k + 1)
                    + log_beta(k + a, targets - k + b) - log_beta(a, b)) for k in range(targets + 1)]
    cdf = list(itertools.accumulate(pmf))
    low = next(k for k, c in enumerate(cdf) if c >= tail)
    high = next(k for k, c in enumerate(cdf) if c >= 1 - tail)
    return low / targets, high / targets


def _range(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}x ({min(values):.2f} to {max(values):.2f})" if values else "none"


def _steady(cell: dict) -> bool:
    rounds = cell.get("round_medians") or []
    if isinstance(rounds, str):
        rounds = json.loads(rounds)
    return len(rounds) >= 2 and max(rounds) <= STEADY * min(rounds)


def this_machine(db: Path, batch: int, verbose: bool, calibration: list[str], dump: dict | None = None) -> None:
    store = Store(db)
    measured = load(store)
    setup, at_batch = predictor.choose_setup(measured, batch)
    chosen = set(calibration)
    calibrating = [m for m in at_batch if m.model in chosen]
    targets = [m for m in at_batch if m.model not in chosen]
    measured_of = {(m.model, m.input_size, batch): m.ok[batch]["latency_median_s"] for m in calibrating}
    wanted = [(m.model, m.input_size, batch) for m in at_batch]
    start = time.perf_counter()
    got, failed = profiles(wanted, store)
    profiled_s = time.perf_counter() - start
    if failed:
        print(f"not profiled: {failed}")
    keys = {k for m in at_batch for k in got[(m.model, m.input_size, batch)]["calls"] if replayable(k)}
    cal_keys = {k for m in calibrating for k in got[(m.model, m.input_size, batch)]["calls"] if replayable(k)}
    start = time.perf_counter()
    rows = kernel_times(sorted(keys), setup, store)
    timed_s = time.perf_counter() - start
    timed = {k: r["seconds"] for k, r in rows.items() if r["seconds"]}
    failed_kernels = [k for k in keys if not rows.get(k, {}).get("seconds")]
    busy = [r["contention"] for r in rows.values() if r.get("contention") is not None]
    print(f"\n### batch size {batch}: {setup.label(machine=True)}\n")
    print(f"calibrated on {len(calibrating)} models ({', '.join(m.model for m in calibrating)}), predicting {len(targets)} others; "
          f"{len(keys)} distinct kernels ({len(cal_keys)} in the calibration models), {len(failed_kernels)} not "
          f"replayable; profiles {profiled_s:.0f} s, kernel timing {timed_s:.0f} s (0 when stored); others' share "
          f"of the cores while timing kernels: median {statistics.median(busy or [0]):.1%}, largest "
          f"{max(busy or [0]):.1%}\n")
    start = time.perf_counter()
    inside_rows, inside_failed = in_model([(m.model, m.input_size, batch) for m in calibrating], setup, store)
    inside_s = time.perf_counter() - start
    specs = predictor.specs_of(got.values())
    runs = [(got[k]["calls"], row["seconds"]) for k, row in inside_rows.items()]
    fits = predictor.in_model_fits(timed, runs, specs)
    corrected = predictor.inside_models(timed, specs, fits)
    print(f"kernels timed inside real passes of the {len(inside_rows)} calibration models in {inside_s:.0f} s (0 when stored) "
          f"({len(inside_failed)} failed {inside_failed or ''}; "
          f"{sum(r['disturbed'] for r in inside_rows.values())} disturbed). Their sum inside each model against "
          "its measured latency (median, range): "
          + _range([sum(n * row["seconds"].get(k, 0.0) for k, n in got[key]["calls"].items()) / measured_of[key]
                    for key, row in inside_rows.items()])
          + "; the share of the profiles' kernel calls found by the same key inside: "
          + _range([sum(n for k, n in got[key]["calls"].items() if k in row["seconds"])
                    / sum(got[key]["calls"].values()) for key, row in inside_rows.items()])
          + "; the kernels alone summed: "
          + _range([sum(n * timed.get(k, 0.0) for k, n in got[key]["calls"].items()) / measured_of[key]
                    for key in inside_rows]))
    print("By kind, the ratio inside / alone (weighted by time inside), and the fit's ratio for a kernel of "
          "the kind's median time alone:")
    for kind in sorted({sp.kind for sp in specs.values()}):
        pairs = [(n * row["seconds"][k], n * timed[k]) for key, row in inside_rows.items()
                 for k, n in got[key]["calls"].items() if k in timed and k in row["seconds"] and specs[k].kind == kind]
        if not pairs:
            continue
        fit = fits.get(f"kind:{kind}")
        typical = statistics.median(timed[k] for k in {k for key in inside_rows for k in got[key]["calls"]}
                                    if k in timed and specs[k].kind == kind)
        print(f"- {kind}: {len(pairs)} kernel calls, {sum(p[0] for p in pairs) / sum(p[1] for p in pairs):.2f}x"
              + (f"; fit {fit(typical):.2f}x at {typical * 1e6:.0f} µs, slope {fit.coefficients[1]:+.2f}" if fit else ""))
    measured_t = [m.ok[batch]["latency_median_s"] for m in targets]
    steady = [_steady(m.ok[batch]) for m in targets]
    print(f"\nOf the {len(targets)} targets, {sum(steady)} have a steady truth (their rounds' medians within "
          f"{STEADY:.2f}x of each other); the interval promises {(len(calibrating) - 1) / (len(calibrating) + 1):.0%} "
          "on average over calibrations; one calibration of {} holds {:.0%} to {:.0%} of {} like targets 90% of the "
          "time.\n".format(len(calibrating), *coverage_band(len(calibrating), len(targets)), len(targets)))
    print(HEAD)
    cal_only = {k: v for k, v in timed.items() if k in cal_keys}
    cal_corrected = {k: v for k, v in corrected.items() if k in cal_keys}
    runtime = cal_runtime = None
    prefix = runtime_kernels.prefix(setup)
    if prefix:  # the runtime's own kernels, timed in it
        start = time.perf_counter()
        def runtime_keys(models):  # the runtime's kernels: its layers with their epilogues
            return {k for m in models for k in runtime_kernels.kernels(got[(m.model, m.input_size, batch)])[0]}

        rt_keys = runtime_keys(at_batch)
        rt_rows = kernel_times([runtime_kernels.runtime_key(k, prefix) for k in sorted(rt_keys)], setup, store)
        runtime = {k: r["seconds"] for k, r in runtime_kernels.by_eager_key(rt_rows, prefix).items() if r["seconds"]}
        cal_runtime = {k: v for k, v in runtime.items() if k in runtime_keys(calibrating)}
        print(f"{setup.backend}'s own kernels: {len(rt_keys)} (of {sum(runtime_kernels.runs(k) for k in keys)} of the "
              f"{len(keys)} kernels, layers apart by epilogue), {len(runtime)} timed in "
              f"{time.perf_counter() - start:.0f} s (0 when stored)\n")
    cases = [("ops (line in MACs)", "ops", None, None, None), ("features", "features", None, None, None),
             (f"auto (of kernels, inside, runtime, features, ops: {AUTO_RULE})", "auto", timed,
              corrected, runtime),
             ("kernels (targets' kernels timed)", "kernels", timed, None, None),
             ("inside (targets' kernels timed, corrected to in-model times)", "inside", timed, corrected, None),
             ("kernels-estimated (calibration's kernels only)", "kernels", cal_only, None, None),
             ("inside-estimated (calibration's kernels only, corrected)", "inside", cal_only, cal_corrected, None)]
    if runtime is not None:
        cases += [(f"runtime (targets' kernels timed in {setup.backend})", "runtime", None, None, runtime),
                  ("runtime-estimated (calibration's kernels only)", "runtime", None, None, cal_runtime)]
    details = {}
    for name, method, table, inside, rt in cases:
        result = predictor.predict_models(calibrating, got, failed, table, batch, method,
                                          [(m.model, m.input_size) for m in targets], inside=inside, runtime=rt,
                                          kernels_of=runtime_kernels.kernels)
        if method == "auto":
            name = f"{name}: chose {result['calibration'].method}"
        predicted = [r["latency_s"] for r in result["rows"]]
        print(_line(name, _scores(predicted, measured_t, result["rows"], steady)))
        details[name] = (result, predicted)
        loo = result["calibration"].loo_errors
        print(f"|  (leave-one-out on the calibration) | {len(loo)} | "
              f"{sum(abs(e) <= .1 for e in loo.values()) / len(loo):.0%} | "
              f"{sum(abs(e) <= .2 for e in loo.values()) / len(loo):.0%} | "
              f"±{statistics.median(abs(e) for e in loo.values()):.1%} | ±{max(abs(e) for e in loo.values()):.0%} | | | |")
    if dump is not None:
        dump[batch] = {"calibrating": [m.model for m in calibrating], "targets": [m.model for m in targets],
                       "measured": {m.model: m.ok[batch]["latency_median_s"] for m in at_batch},
                       "steady": {m.model: _steady(m.ok[batch]) for m in at_batch},
                       "profiles": {m.model: got[(m.model, m.input_size, batch)] for m in at_batch},
                       "alone": timed, "inside": {f"{n}@{b}": row["seconds"] for (n, _, b), row in inside_rows.items()},
                       "runtime": runtime}
    if verbose:
        result, predicted = next(v for k, v in details.items() if k.startswith("auto"))
        cal = result["calibration"]
        print(f"\nauto's fit ({cal.method}): {dict(zip(cal.columns, cal.coefficients, strict=True))}")
        print(f"\n| model | measured (ms) | rounds' medians (ms) | {cal.method} (ms) | error | interval (ms) | "
              "inside | extrapolates | ops error |")
        print("|---|---|---|---|---|---|---|---|---|")
        _, ops_pred = details["ops (line in MACs)"]
        for r, p, m, o, t in zip(result["rows"], predicted, measured_t, ops_pred, targets, strict=True):
            inside = r["low_s"] <= m <= r["high_s"]
            rounds = t.ok[batch].get("round_medians") or []
            rounds = json.loads(rounds) if isinstance(rounds, str) else rounds
            print(f"| {r['model']} | {m * 1e3:.2f} | {', '.join(f'{v * 1e3:.1f}' for v in rounds)} | {p * 1e3:.2f} | "
                  f"{(p - m) / m:+.0%} | {r['low_s'] * 1e3:.1f} to {r['high_s'] * 1e3:.1f} | "
                  f"{'yes' if inside else 'no'} | {'; '.join(r['extrapolations']) or ''} | {(o - m) / m:+.0%} |")
    store.close()


def timm_half_splits(sample: int, splits: int, db: Path) -> None:
    with open(TIMM_CSV) as f:
        rows = [r for r in csv.DictReader(f) if all(r[c] for c in ("infer_gmacs", "infer_macts", "param_count"))
                and float(r["infer_step_time"]) > 0]
    print(f"\n### timm's CPU benchmark: {len(rows)} models with GMACs, activations and parameters, batch 1 ({TIMM_CSV.name})\n")
    points = [predictor.Point(r["model"], {"macs": float(r["infer_gmacs"]), "activations": float(r["infer_macts"]),
                                           "params": float(r["param_count"])}, float(r["infer_step_time"]) / 1e3)
              for r in rows]
    columns = {"timm GMACs line (OLS)": ("one", "macs"), "timm GMACs, relative": ("one", "macs"),
               "timm GMACs + activations": ("one", "macs", "activations"),
               "timm GMACs + activations + params": ("one", "macs", "activations", "params")}
    print(HEAD)
    for name, cols in columns.items():
        print(_line(name, _splits(points, cols, splits, relative="OLS" not in name)))
    # dnnbench's features, on a random sample profiled here
    rng = random.Random(0)
    chosen = rng.sample(rows, min(sample, len(rows)))
    store = Store(db)
    start = time.perf_counter()
    got, failed = profiles([(f"timm/{r['model']}", int(r["infer_img_size"]), 1) for r in chosen], store)
    print(f"\n(dnnbench features on a random {len(chosen)} of them: {len(got)} profiled, {len(failed)} not (unknown "
          f"to this timm, or failing to build), in {time.perf_counter() - start:.0f} s)\n")
    ours = []
    for r in chosen:
        key = (f"timm/{r['model']}", int(r["infer_img_size"]), 1)
        if key in got:
            f = predictor.features(got[key])
            f.update(timm_macs=float(r["infer_gmacs"]), timm_activations=float(r["infer_macts"]))
            ours.append(predictor.Point(r["model"], f, float(r["infer_step_time"]) / 1e3))
    print(HEAD)
    sets = {"timm GMACs line (OLS), same models": (("one", "timm_macs"), False),
            "timm GMACs + activations, same models": (("one", "timm_macs", "timm_activations"), True),
            "dnnbench MACs line (OLS)": (("one", "macs"), False),
            "dnnbench MACs + activations + kernel calls": (("one", "macs", "activations", "kernels"), True),
            "dnnbench features (MACs by kind, activations, calls)": (predictor.METHODS["features"], True)}
    for name, (cols, relative) in sets.items():
        print(_line(name, _splits(ours, cols, splits, relative)))
    store.close()


def _splits(points: list, columns: tuple, splits: int, relative: bool) -> dict:
    """Scores pooled over ``splits`` random halves: fit on one half, predict the other."""
    import numpy as np

    rng = random.Random(1)
    predicted, measured = [], []
    for _ in range(splits):
        shuffled = points[:]
        rng.shuffle(shuffled)
        fit_on, check = shuffled[: len(points) // 2], shuffled[len(points) // 2:]
        x = np.array([predictor._row(p.features, columns) for p in fit_on])
        y = np.array([p.latency_s for p in fit_on])
        coef = predictor._solve(x, y, relative)
        for p in check:
            predicted.append(max(float(np.dot(predictor._row(p.features, columns), coef)), 1e-9))
            measured.append(p.latency_s)
    return _scores(predicted, measured)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--batch-sizes", default="1,16")
    parser.add_argument("--calibrate", default="canziani2016",
                        help="the calibration models: a zoo preset, or a comma-separated list of models")
    parser.add_argument("--timm-sample", type=int, default=400, help="timm models to profile for dnnbench's features")
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--skip-machine", action="store_true")
    parser.add_argument("--skip-timm", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--dump", type=Path, help="write each batch size's profiles, kernel times and truth as JSON")
    args = parser.parse_args()
    calibration = preset(args.calibrate) if "," not in args.calibrate else args.calibrate.split(",")
    dumped = {} if args.dump else None
    if not args.skip_machine:
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            this_machine(args.db, batch, args.verbose, calibration, dumped)
        if args.dump:
            args.dump.write_text(json.dumps({str(b): d for b, d in dumped.items()}))
    if not args.skip_timm:
        timm_half_splits(args.timm_sample, args.splits, args.db)


if __name__ == "__main__":
    main()
