"""dnnbench's peak rate under a p99 limit against MLPerf LoadGen's Server scenario, on this machine.

For each model (eager fp32, the threads given, no batching), as a user runs it: `dnnbench.serve` searches the highest
rate whose p99 has its 95% upper bound under the limit, timed; then LoadGen (``pip install
mlcommons-loadgen``) serves the same model in this process, one request at a time from one FIFO
queue, at rates around that peak (``--ratios``), each for ``--loadgen-seconds`` (MLPerf's rule is 600 s; 300 s is the issue's reference), and says which are
VALID (p99 under the limit). The reference peak lies between the highest VALID rate and the lowest
INVALID one. Each pass LoadGen's server runs is timed, so the machine's speed during the reference
(10 s windows) is printed beside the speeds dnnbench's points saw.

Each reference point also reports its offered load over dnnbench's peak at the speeds each saw
(rate times median pass, over the same for the peak). The machine's speed moves in phases of 20 to
60 s (mobilenet_v3_large's 10 s medians in a plain loop: 13.7 to 18.1 ms), and a peak is the rate
one speed sustains: that figure tells a gap of method from a gap of machine. (Scaling LoadGen's
rate by 5 s of passes just before it was tried and dropped: those 5 s were no guide to the next
300 s, 18.1 ms before against a median of 15.5 during.)

A model's own limit follows it after a colon; the others take --p99.

Run it on a quiet machine: both sides take the cores. Prints one table and writes serving_peak.json,
and dnnbench's points to serving_peak.db (``--db``).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import tempfile
import threading
import time


def dnnbench_peak(model: str, limit: str, threads: int, search_s: float, db: str) -> dict:
    import dnnbench

    t0 = time.perf_counter()
    served = dnnbench.serve(model, p99=limit, threads=threads, progress=False,
                            max_seconds_per_search=search_s, db=db)
    wall = time.perf_counter() - t0
    [peak] = served.peaks
    points = [p for p in served if p["status"] == "ok"]
    load = sum(p["load_cpu_s"] or 0 for p in points) / sum(p["wall_s"] for p in points)
    first = min(float(s) for s in (points[0]["service_s"] or {"1": None}).values()) if points else None
    at_peak = [p for p in points if p["qps"] == peak["peak_qps"] and p.get("slowdown")]
    return {"peak_qps": peak["peak_qps"], "peak_pass_s": at_peak[0]["slowdown"] * first if at_peak and first else None, "speed_low": peak["speed_low"],
            "speed_high": peak["speed_high"], "first_pass_s": first,
            "pass_s": [p["slowdown"] * first for p in points if p.get("slowdown") and first],
            "next_failed_qps": peak["next_failed_qps"], "search_s": wall,
            "points": len(points), "load_gen_core_share": load,
            "busy_points": sum(bool(p["disturbed"]) for p in points)}


class FifoServer:
    """LoadGen's system under test: one instance serving one FIFO queue, a request at a time, its passes
    run in the main thread (as dnnbench's first instance: a pass from another Python thread runs slower
    on CPU) while LoadGen's test runs in a thread of its own."""

    def __init__(self, model: str, threads: int):
        import torch

        from dnnbench.zoo import get
        from dnnbench.zoo.weights import calibrate_norms_

        torch.set_num_threads(threads)
        entry = get(model)
        self.model = entry.build("cpu").eval()
        self.x = torch.randn(1, 3, entry.input_size, entry.input_size)
        calibrate_norms_(self.model, torch.randn(2, 3, entry.input_size, entry.input_size))
        self.queue: queue.Queue = queue.Queue()
        self.passes: list[tuple[float, float]] = []  # (when it ended, seconds) of each pass served

    def serve_until_done(self, test: threading.Thread) -> None:
        import mlperf_loadgen as lg
        import torch

        with torch.inference_mode():
            while test.is_alive() or not self.queue.empty():
                try:
                    sample = self.queue.get(timeout=0.05)
                except queue.Empty:
                    continue
                t0 = time.perf_counter()
                self.model(self.x)
                end = time.perf_counter()
                self.passes.append((end, end - t0))
                lg.QuerySamplesComplete([lg.QuerySampleResponse(sample.id, 0, 0)])

    def issue(self, samples) -> None:
        for s in samples:
            self.queue.put(s)

    def close(self) -> None:
        pass


def loadgen_point(server: FifoServer, qps: float, limit_s: float, seconds: float) -> dict:
    import mlperf_loadgen as lg

    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.Server
    settings.mode = lg.TestMode.PerformanceOnly
    settings.server_target_qps = qps
    settings.server_target_latency_ns = int(limit_s * 1e9)
    settings.server_target_latency_percentile = 0.99
    settings.min_duration_ms = int(seconds * 1000)
    settings.max_duration_ms = int(seconds * 1000 * 1.5)
    settings.min_query_count = 1
    server.passes = []
    sut = lg.ConstructSUT(server.issue, lambda: None)
    qsl = lg.ConstructQSL(1024, 1024, lambda s: None, lambda s: None)
    with tempfile.TemporaryDirectory() as out:
        log = lg.LogOutputSettings()
        log.outdir = out
        log_settings = lg.LogSettings()
        log_settings.log_output = log
        test = threading.Thread(target=lg.StartTestWithLogSettings, args=(sut, qsl, settings, log_settings))
        test.start()
        server.serve_until_done(test)
        test.join()
        summary = open(os.path.join(out, "mlperf_log_summary.txt")).read()
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)
    p99 = re.search(r"99.00 percentile latency \(ns\)\s*:\s*(\d+)", summary)
    done = re.search(r"Completed samples per second\s*:\s*([\d.]+)", summary)
    checks = dict(re.findall(r"^\s*(Min duration satisfied|Min queries satisfied|Early stopping satisfied|"
                             r"Performance constraints satisfied)\s*:\s*(\w+)", summary, re.M))
    passes = sorted(seconds for _, seconds in server.passes)
    return {"qps": qps, "valid": "Result is : VALID" in summary,
            "median_pass_s": passes[len(passes) // 2] if passes else None, "p99_s": int(p99.group(1)) / 1e9 if p99 else None,
            "completed_qps": float(done.group(1)) if done else None, "checks": checks,
            "window_pass_s": window_medians(server.passes, 10.0)}


def window_medians(passes: list[tuple[float, float]], window_s: float) -> list[float]:
    """The median pass time of each ``window_s`` stretch of a run (seconds): the machine's speed along it."""
    if not passes:
        return []
    start, out, current = passes[0][0], [], []
    for end, seconds in passes:
        if end - start >= window_s and current:
            out.append(sorted(current)[len(current) // 2])
            start, current = end, []
        current.append(seconds)
    if current:
        out.append(sorted(current)[len(current) // 2])
    return out


def speed_words(first: float | None, times: list[float]) -> str:
    if not times or not first:
        return "-"
    ordered = sorted(times)
    return (f"{1e3 * ordered[0]:.3g} to {1e3 * ordered[-1]:.3g} ms, median {1e3 * ordered[len(ordered) // 2]:.3g} "
            f"({ordered[0] / first:.2f}x to {ordered[-1] / first:.2f}x the search's first timing)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="squeezenet1_1,resnet18,resnet50")
    parser.add_argument("--p99", default="100ms")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--loadgen-seconds", type=float, default=300.0)
    parser.add_argument("--ratios", default="0.9,1.1", help="LoadGen rates as multiples of dnnbench's peak")
    parser.add_argument("--db", default="serving_peak.db", help="where dnnbench's points are kept")
    parser.add_argument("--search-seconds", type=float, default=60.0, help="dnnbench's search budget per model")
    args = parser.parse_args()
    from dnnbench.units import parse_duration

    rows = []
    for item in args.models.split(","):
        model, _, own_limit = item.partition(":")
        limit_text = own_limit or args.p99
        limit = parse_duration(limit_text)
        print(f"{model}: p99 under {limit_text}, load average {os.getloadavg()[0]:.2f} at the start", flush=True)
        ours = dnnbench_peak(model, limit_text, args.threads, args.search_seconds, args.db)
        figure = ours["peak_qps"]
        server = FifoServer(model, args.threads)
        try:
            ref = [loadgen_point(server, figure * float(r), limit, args.loadgen_seconds)
                   for r in args.ratios.split(",")] if figure else []
            for p in ref:
                p["utilisation_vs_peak"] = (p["qps"] * p["median_pass_s"] / (figure * ours["peak_pass_s"])
                                            if p["median_pass_s"] and ours["peak_pass_s"] else None)
        finally:
            server.close()
        valid = [p["qps"] for p in ref if p["valid"]]
        invalid = [p["qps"] for p in ref if not p["valid"] and (not valid or p["qps"] > max(valid))]
        rows.append({"model": model, "limit_s": limit, **ours, "loadgen": ref, "loadgen_peak_between": [max(valid) if valid else None,
                                                                                      min(invalid) if invalid else None]})
        r = rows[-1]
        if r["peak_qps"] is None:
            print(f"{model}: dnnbench found no rate that met the limit in {r['search_s']:.0f} s ({r['points']} points, "
                  f"the fastest failed {r['next_failed_qps']})", flush=True)
            continue
        print(f"{model}: dnnbench peak {r['peak_qps']:.3g} req/s in {r['search_s']:.0f} s ({r['points']} points, load "
              f"generator {100 * r['load_gen_core_share']:.2f}% of a core, {r['busy_points']} busy); its points' passes "
              f"{speed_words(r['first_pass_s'], r['pass_s'])}", flush=True)
        for p in ref:
            print(f"  LoadGen at {p['qps']:.3g} req/s: 10 s windows' passes "
                  f"{speed_words(r['first_pass_s'], p['window_pass_s'])}; offered load over dnnbench's peak "
                  f"at the speeds each saw (rate x median pass): {p['utilisation_vs_peak'] or float('nan'):.3f}",
                  flush=True)
        print(f"{model}: LoadGen "
              + ", ".join(f"{p['qps']:.3g}: {'VALID' if p['valid'] else 'INVALID'} (p99 {1e3 * (p['p99_s'] or 0):.1f} ms"
                          + "".join(f"; {k}: {v}" for k, v in p["checks"].items() if v != "Yes") + ")"
                          for p in ref), flush=True)
    with open("serving_peak.json", "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
