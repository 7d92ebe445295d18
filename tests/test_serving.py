"""Serving under load: the arrival schedule's statistics, the coverage of the tail bounds on
synthetic samples, the batching policy on a fake clock (against queueing theory), the peak search on
a fake server, `recommend --qps` on a synthetic database, and one real server run of a tiny model."""

from __future__ import annotations

import json
import random
import sqlite3
import statistics

import pytest

import dnnbench
from dnnbench.analysis.serving import Served, answer, peak, peaks
from dnnbench.api import _speed_words
from dnnbench.errors import UserError
from dnnbench.measure.serving import Policy, arrivals, capacity, serve, verdict
from dnnbench.store import Store
from dnnbench.worker.serving import batch_sizes, point_seconds, search

from clitool import cli  # noqa: E402

TINY = f"{__import__('pathlib').Path(__file__).parent / 'data' / 'faulty_models.py'}:tiny"


# -- the schedule ------------------------------------------------------------------------------------


def test_arrivals_are_a_poisson_process_at_the_rate():
    times = arrivals(50.0, 20000, seed=1)
    gaps = [b - a for a, b in zip([0.0, *times], times)]
    assert statistics.fmean(gaps) == pytest.approx(1 / 50, rel=0.03)
    assert statistics.stdev(gaps) / statistics.fmean(gaps) == pytest.approx(1.0, rel=0.05)  # exponential: CV 1
    counts = [0] * int(times[-1])  # requests per second: Poisson, variance = mean
    for t in times:
        if int(t) < len(counts):
            counts[int(t)] += 1
    assert statistics.fmean(counts) == pytest.approx(50, rel=0.03)
    assert statistics.variance(counts) / statistics.fmean(counts) == pytest.approx(1.0, abs=0.25)
    assert arrivals(50.0, 10, seed=1) == times[:10] and arrivals(50.0, 10, seed=2) != times[:10]


def test_a_verdict_is_only_given_on_a_bound():
    ok = [0.010] * 400
    assert verdict(ok, 0.99, 0.020) == "pass"
    assert verdict([0.030] * 400, 0.99, 0.020) == "fail"
    assert verdict([0.010] * 50, 0.99, 0.020) == "open"  # too few requests for a p99 bound
    assert verdict([0.010] * 396 + [0.5] * 4, 0.99, 0.020) == "open"  # the bound reaches the slow ones


# -- the batching policy on a fake clock --------------------------------------------------------------


def test_a_batch_goes_when_full_or_when_its_oldest_has_waited_enough():
    policy = Policy(max_batch=4, max_wait_s=0.010)
    latency = serve([0.0, 0.001, 0.002, 0.003, 0.100], lambda b: 0.020, policy)
    assert latency[:4] == pytest.approx([0.023, 0.022, 0.021, 0.020])  # full at 3 ms
    assert latency[4] == pytest.approx(0.030)  # alone: waited 10 ms, then 20 ms of service
    assert serve([0.0, 0.001], lambda b: 0.020, Policy())[1] == pytest.approx(0.039)  # queued behind the first


def test_two_instances_serve_one_queue_side_by_side():
    latency = serve([0.0, 0.0, 0.0], lambda b: 0.010, Policy(instances=2))
    assert latency == pytest.approx([0.010, 0.010, 0.020])


@pytest.mark.parametrize("load", [0.3, 0.7])
def test_one_server_matches_queueing_theory(load):
    """M/D/1: Poisson arrivals, a fixed service time: mean latency 1/mu + rho / (2 mu (1 - rho))."""
    service = 0.010
    times = arrivals(load / service, 100_000, seed=3)
    mean = statistics.fmean(serve(times, lambda b: service, Policy()))
    assert mean == pytest.approx(service + load * service / (2 * (1 - load)), rel=0.03)


def test_capacity_is_the_best_batch_rate_the_policy_allows():
    measured = {1: 0.010, 2: 0.015, 4: 0.024, 8: 0.050}
    assert capacity(measured, Policy(max_batch=1)) == pytest.approx(100)
    assert capacity(measured, Policy(max_batch=4, instances=2)) == pytest.approx(2 * 4 / 0.024)
    assert batch_sizes(6) == [1, 2, 4, 6] and batch_sizes(1) == [1]


def test_the_queueing_model_predicts_a_peak_below_capacity_that_grows_with_the_limit_and_with_batching():
    from dnnbench.measure.serving import predicted_peak

    rng = random.Random(0)
    service = {b: [0.004 + 0.006 * b ** 0.5 * rng.uniform(0.95, 1.1) for _ in range(30)] for b in (1, 2, 4)}
    one = Policy()
    tight, loose = predicted_peak(service, one, 0.99, 0.030), predicted_peak(service, one, 0.99, 0.100)
    assert 0 < tight < loose <= capacity({1: 0.010}, one) * 1.01
    assert predicted_peak(service, Policy(max_batch=4, max_wait_s=0.005), 0.99, 0.100) > 1.5 * loose
    # on fresh schedules, 10% below the predicted peak meets the limit and 10% above does not
    for factor, meets in ((0.9, True), (1.1, False)):
        latency = sorted(serve(arrivals(factor * loose, 20000, seed=9), lambda b: rng.choice(service[1]), one))
        assert (latency[int(0.99 * len(latency))] <= 0.100) is meets, factor


def test_one_stall_among_the_service_times_does_not_sink_the_prediction():
    from dnnbench.measure.serving import predicted_peak

    steady = [0.015 + 0.0001 * k for k in range(39)]
    alone = predicted_peak({1: steady}, Policy(), 0.99, 0.100)
    stalled = predicted_peak({1: steady + [0.9]}, Policy(), 0.99, 0.100)  # 1 of 40: 2.5% of draws over the limit
    assert alone and stalled == pytest.approx(alone, rel=0.05)


# -- the peak search on a fake server ----------------------------------------------------------------


@pytest.mark.parametrize("start", [20.0, 37.0, 80.0, 400.0])
def test_the_search_brackets_the_peak_to_its_resolution(start):
    peak, asked = 37.3, []

    def point(qps, k):
        asked.append(qps)
        return {"verdict": "pass" if qps <= peak else "fail"}

    found = search(point, start, resolution=0.05, max_points=12)
    assert found["passed"] <= peak < found["failed"]
    assert (found["failed"] - found["passed"]) / found["failed"] <= 0.05
    assert found["points"] == len(asked) <= 12


def test_after_an_undecided_point_the_search_steps_small_again():
    # rates from 30 to 40 requests/s end open (a stall or two among their requests): the peak is near,
    # so the search steps down 6% at a time, not 25% and then halving
    asked = []

    def point(qps, k):
        asked.append(qps)
        return {"verdict": "pass" if qps <= 30.0 else "open" if qps <= 40.0 else "fail"}

    found = search(point, 37.0, resolution=0.05, max_points=12)
    downs = [a / b for a, b in zip(asked, asked[1:]) if b < a and b > 30.0]
    assert downs and all(r == pytest.approx(1.06) for r in downs)
    assert 30.0 * 0.94 <= found["passed"] <= 30.0 < found["failed"]
    # open with the percentile over the limit and late requests second after second (not one run):
    # the steps grow as after a fail
    asked.clear()
    leaning = search(lambda qps, k: {**point(qps, k), "late_throughout": True}, 37.0, max_points=12)
    assert asked[1] / asked[2] == pytest.approx(1.25) and leaning["passed"] <= 30.0


def test_a_peak_found_in_a_fast_phase_is_served_again_longer_and_stepped_down():
    # short points pass up to 50 requests/s (the machine's fast phase); served for 30 s, only 40 holds
    now, confirmed, served = [0.0], [], []

    def point(qps, k):
        now[0] += 4.0
        served.append(qps)
        return {"verdict": "pass" if qps <= 50.0 else "fail"}

    def confirm(qps, k):
        now[0] += 30.0
        confirmed.append(qps)
        return {"verdict": "pass" if qps <= 40.0 else "fail"}

    found = search(point, 45.0, resolution=0.05, max_points=12, budget_s=200.0, clock=lambda: now[0],
                   confirm=confirm)
    assert confirmed[0] > 47.5 and all(b < a for a, b in zip(confirmed, confirmed[1:]))  # the peak, then lower
    assert found["confirmed"] == confirmed[-1] <= 40.0 < found["failed"]
    assert found["passed"] < found["failed"] and found["passed"] >= found["confirmed"]
    assert found["points"] == len(served) + len(confirmed)  # every point counted once
    assert found["confirming"] == len(confirmed)


def test_a_confirmation_needs_its_time_and_a_peak_that_holds_is_kept():
    now = [0.0]

    def point(qps, k):
        now[0] += 4.0
        return {"verdict": "pass" if qps <= 37.3 else "fail"}

    held = search(point, 30.0, budget_s=200.0, clock=lambda: now[0], confirm=lambda qps, k: {"verdict": "pass"})
    plain = search(point, 30.0)
    assert held["confirmed"] == held["passed"] == plain["passed"] and held["points"] == plain["points"] + 1
    asked = []
    short = search(point, 30.0, budget_s=1.0, clock=lambda: 0.0, confirm=lambda qps, k: asked.append(qps))
    assert asked == [] and short["confirmed"] is None  # under CONFIRM_MIN_S left: no confirmation
    from dnnbench.runner.serving import _confirmation_words

    assert "held when served again" in _confirmation_words(held)
    assert "not served again" in _confirmation_words(short) and _confirmation_words(plain) == ""


# -- the analysis and recommend --qps ------------------------------------------------------------------


def point(model, qps, high, max_batch=1, **extra):
    return {"run_id": 1, "model": model, "input_size": 224, "machine": "m1", "device": "cpu", "backend": "eager",
            "precision": "fp32", "threads": 2, "layout": "nchw", "max_batch": max_batch, "max_wait_s": 0.005,
            "instances": 1, "status": "ok", "qps": qps, "achieved_qps": qps, "requests": 500, "served": 500,
            "wall_s": 10.0, "p50_s": high / 3, "q": 0.99, "q_low_s": high / 2, "q_high_s": high, "limit_s": 0.05,
            "verdict": "pass" if high <= 0.05 else "fail", "overloaded": False, "load_cpu_s": 0.05,
            "disturbed": False, "mem_peak_bytes": 5 * 10**8, **extra}


POINTS = [point("resnet50", 8, 0.040), point("resnet50", 12, 0.048), point("resnet50", 14, 0.090),
          point("resnet18", 30, 0.020), point("resnet18", 45, 0.045), point("resnet18", 50, 0.200),
          point("resnet18", 60, 0.030, max_batch=4), point("resnet18", 70, 0.080, max_batch=4)]


def test_the_peak_is_the_highest_rate_whose_bound_meets_the_limit():
    found = {(p.served.model, p.served.max_batch): p for p in peaks(POINTS, 0.99, 0.050)}
    assert found[("resnet50", 1)].qps == 12 and found[("resnet50", 1)].next_failed == 14
    assert found[("resnet18", 1)].qps == 45 and found[("resnet18", 4)].qps == 60
    assert {(p.served.model, p.served.max_batch): p.qps for p in peaks(POINTS, 0.99, 0.025)} == {
        ("resnet50", 1): None, ("resnet18", 1): 30, ("resnet18", 4): None}
    assert all(p.qps is None for p in peaks(POINTS, 0.90, 0.050))  # measured for p99: no p90 claim


def test_a_pass_above_a_shown_fail_does_not_count():
    # 50/s passed a short point in a fast phase; served 30 s it failed, and so did 45/s; 40/s held
    fast = [point("m", 50, 0.040), point("m", 50, 0.090), point("m", 45, 0.080), point("m", 40, 0.045),
            point("m", 55, 0.200)]
    (found,) = peaks(fast, 0.99, 0.050)
    assert found.qps == 40 and found.next_failed == 45
    undecided = {**point("m", 45, 0.080), "verdict": "open"}  # over the limit, but no fail shown: no refutation
    (found,) = peaks([point("m", 50, 0.040), undecided], 0.99, 0.050)
    assert found.qps == 50
    (found,) = peaks([point("m", 50, 0.040), point("m", 45, 0.080)], 0.99, 0.030)  # another limit: its lower bound
    assert found.qps is None and found.next_failed == 45
    # under the limit by its bound, but not shown over seconds of arrivals (or its queue not settled):
    # open at the limit it was served for, a pass only at another limit, where its bound alone speaks
    unsettled = {**point("m", 50, 0.040), "verdict": "open"}
    assert peaks([point("m", 40, 0.030), unsettled], 0.99, 0.050)[0].qps == 40
    assert peaks([point("m", 40, 0.030), unsettled], 0.99, 0.060)[0].qps == 50


def test_the_answer_to_a_load_is_the_most_accurate_that_sustains_it():
    top1 = {("resnet50", 224): 76.1, ("resnet18", 224): 69.8}
    verdicts = answer(POINTS, top1, 10.0, 0.99, 0.050, None)
    assert (verdicts[0].peak.served.model, verdicts[0].ok) == ("resnet50", True)
    verdicts = answer(POINTS, top1, 40.0, 0.99, 0.050, None)
    assert [(v.peak.served.model, v.peak.served.max_batch) for v in verdicts if v.ok] == [("resnet18", 4), ("resnet18", 1)]
    assert "sustains 12 requests/s, not 40" in verdicts[-1].broken[0]
    assert not any(v.ok for v in answer(POINTS, top1, 10.0, 0.99, 0.050, 10**8))  # 477 MiB of memory each


# -- the machine's speed along a search -------------------------------------------------------------


def _timed(qps, verdict, q_high, slowdown, wall_s, service=0.015):
    return {"qps": qps, "q": 0.99, "q_high_s": q_high, "verdict": verdict, "slowdown": slowdown,
            "service_s": {"1": service}, "wall_s": wall_s}


def test_a_peak_says_how_far_the_machines_speed_moved_along_its_search():
    def read(points):
        return peak(Served("m", 224, None, 1, 0.0, 1, points), 0.99, 0.1)

    steady = read([_timed(40, "pass", 0.08, 1.0, 7.0), _timed(44, "fail", None, 1.0, 3.0)])
    assert steady.qps == 40 and steady.speed_range == (1.0, 1.0)
    assert steady.held_s == 7.0
    confirmed = read([_timed(40, "pass", 0.08, 1.0, 7.0), _timed(40, "pass", 0.09, 1.0, 30.5)])
    assert confirmed.held_s == 30.5  # served again for the search's time left
    drifted = read([_timed(40, "pass", 0.08, 0.9, 7.0), _timed(44, "fail", None, 0.95, 3.0),
                    _timed(42, "fail", None, 1.26, 1.5)])
    assert drifted.qps == 40 and drifted.speed_range == (1.0, pytest.approx(1.4))  # over the peak point's passes
    # another worker whose first timing was slower: pass times are compared, not each worker's ratios
    assert read([_timed(40, "pass", 0.08, 1.0, 7.0),
                 _timed(44, "fail", None, 0.75, 3.0, service=0.020)]).speed_range == (1.0, 1.0)
    busy = read([_timed(40, "pass", 0.08, 1.0, 7.0), {**_timed(44, "fail", None, 1.5, 3.0), "disturbed": True}])
    assert busy.speed_range == (1.0, 1.0)  # another process's load is flagged, not the machine's own drift
    assert read([_timed(40, "pass", 0.08, None, 7.0), _timed(44, "fail", None, 1.3, 3.0)]).speed_range is None
    assert "ran 1.00x to 1.40x as long" in _speed_words(drifted)
    assert "kept their speed" in _speed_words(steady)


@pytest.mark.process
def test_recommend_qps_answers_from_the_database(tmp_path, synthetic):
    db = synthetic.make_db(tmp_path / "s.db")
    with Store(db) as store:
        for p in POINTS:
            store.put_serving(p)
    out = cli("recommend", "--db", db, "--qps", "40", "--p99", "50ms", "--max-memory", "2GB")
    assert out.returncode == 0, out.stderr
    assert "A load of 40 requests/s (Poisson) with p99 under 50 ms" in out.stdout
    assert "Answer: resnet18 in eager fp32, batch 4, 1 instance(s): it sustains 60 requests/s (+50%)" in out.stdout
    rows = json.loads(cli("recommend", "--db", db, "--qps", "40", "--p99", "50ms", "--max-memory", "2GB",
                          "--json").stdout)
    assert [r["passes"] for r in rows] == [True, True, False] and rows[0]["margin"] == pytest.approx(0.5)
    line = cli("recommend", "--db", db, "--qps", "40", "--max-memory", "2GB").stderr
    assert "a load is --qps N with its tail limit --p99 TIME" in line


def test_a_database_without_points_under_load_says_how_to_measure_them(tmp_path, synthetic):
    db = synthetic.make_db(tmp_path / "s.db")
    with pytest.raises(UserError, match="holds no measurement under load: run `dnnbench run MODEL --scenario server"):
        dnnbench.open(db).recommend_serving(10, p99="50ms")


@pytest.mark.process
def test_single_stream_and_server_options_do_not_mix(tmp_path):
    out = cli("run", "resnet18", "--qps", "10", "--db", tmp_path / "a.db")
    assert out.returncode == 2 and "--qps belong to the server scenario: add --scenario server" in out.stderr
    out = cli("run", "resnet18", "--scenario", "server", "--p99", "50ms", "--rounds", "2", "--db", tmp_path / "a.db")
    assert out.returncode == 2 and "--rounds belong to the single-stream scenario" in out.stderr
    out = cli("run", "resnet18", "--scenario", "server", "--db", tmp_path / "a.db")
    assert out.returncode == 2 and "give the tail limit: p99 (or p90)" in out.stderr


# -- one real server run -----------------------------------------------------------------------------


@pytest.mark.process
def test_a_tiny_model_served_at_two_rates(tmp_path):
    db = tmp_path / "serve.db"
    out = cli("run", TINY, "--scenario", "server", "--input-size", "32", "--threads", "1", "--p90", "250ms",
              "--qps", "20,40", "--max-batch", "4", "--max-wait", "2ms", "--max-seconds-per-point", "3",
              "--on-busy", "measure", "--db", db)
    assert out.returncode == 0, out.stderr
    with sqlite3.connect(db) as con:
        con.row_factory = sqlite3.Row
        rows = [dict(r) for r in con.execute("SELECT * FROM serving ORDER BY qps")]
    assert [r["qps"] for r in rows] == [20, 40] and all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert r["verdict"] == "pass" and r["requests"] >= 29 and r["q_high_s"] <= 0.25
        assert r["achieved_qps"] == pytest.approx(r["qps"], rel=0.5)  # a Poisson process over a few seconds
        assert 0 <= r["load_cpu_s"] / r["wall_s"] < 0.5 and r["max_batch"] == 4
        # one thread for the model: where the worker may use a second core, the generator takes it
        assert r["load_apart"] == (len(__import__("os").sched_getaffinity(0)) > 1)
        assert json.loads(r["service_s"]).keys() == {"1", "2", "4"}
        assert 0.2 < r["slowdown"] < 20  # the passes timed against the service times, as a ratio
    assert "Peak: the highest rate whose p90" in out.stdout


def test_points_under_load_merge_once(tmp_path, synthetic):
    source, into = synthetic.make_db(tmp_path / "board.db"), tmp_path / "all.db"
    with Store(source) as store:
        for p in POINTS[:3]:
            store.put_serving(p)
    assert dnnbench.merge([source], into).points == 3
    again = dnnbench.merge([source], into)
    assert again.points == 0 and "0 point(s) under load and" in str(again)
    with Store(into, create=False) as store:
        assert sorted(p["qps"] for p in store.serving()) == [8, 12, 14]


def test_the_report_draws_the_points_under_load(tmp_path, synthetic):
    db = synthetic.make_db(tmp_path / "s.db")
    with Store(db) as store:
        for p in POINTS:
            store.put_serving(p)
    page = dnnbench.open(db).report(tmp_path / "rep").read_text()
    assert (tmp_path / "rep" / "under_load.svg").exists() and 'id="fig-under_load"' in page
    assert "resnet18 (eager fp32, batch 4, 1 inst.) sustains the most: 60 requests/s with p99 under 50 ms" in page


@pytest.mark.process
def test_a_limit_below_one_pass_is_said_at_once(tmp_path):
    out = cli("run", TINY, "--scenario", "server", "--input-size", "32", "--threads", "1", "--p99", "1us",
              "--on-busy", "measure", "--db", tmp_path / "s.db")
    assert out.returncode == 4, out.stderr  # nothing measured
    assert "no rate can meet the limit: one pass takes" in out.stderr and "above the limit of 0.001 ms" in out.stderr


# -- MLPerf's four scenarios from one database --------------------------------------------------------


def test_the_four_scenarios_are_read_from_the_cells_and_the_points(tmp_path, synthetic):
    db = synthetic.make_db(tmp_path / "s.db")
    samples = [0.01 + i * 1e-5 for i in range(300)]
    with sqlite3.connect(db) as con:
        con.execute("UPDATE cells SET latency_p99_s = ?, latency_p99_high_s = ?, samples = 300 "
                    "WHERE model = 'resnet18' AND batch_size = 8", (samples[296], samples[-1]))
    con.close()
    with Store(db) as store:
        for p in POINTS:
            store.put_serving(p)
    rows = {r.model: r for r in dnnbench.open(db).scenarios}
    r18, r50, vgg = rows["resnet18"], rows["resnet50"], rows["vgg16"]
    assert r18.offline["batch_size"] == 32  # the synthetic sweep is fastest per image at its largest batch
    assert r18.offline["low"] < r18.offline["images_per_s"] < r18.offline["high"]
    assert r18.multi_stream["p99_high_s"] == samples[-1] and r50.multi_stream["p99_high_s"] is None
    assert r18.server["peak_qps"] == 60 and "batches of up to 4" in r18.server["policy"]
    assert r50.server["peak_qps"] == 12 and vgg.server is None
    text = str(dnnbench.open(db).scenarios)
    assert "too few passes (20) for p99" in text and "setup" not in text.splitlines()[0] and "60 req/s at p99 ≤ 50 ms" in text
    assert "multi_stream_p99_high_s" in dnnbench.open(db).scenarios.to_dicts()[0]


@pytest.mark.process
def test_the_multi_stream_scenario_takes_the_passes_that_bound_its_p99(tmp_path):
    db = tmp_path / "m.db"
    out = cli("run", TINY, "--scenario", "multi-stream", "--input-size", "32", "--threads", "1", "--quick",
              "--rounds", "2", "--on-busy", "measure", "--db", db)
    assert out.returncode == 0, out.stderr
    (cell,) = dnnbench.open(db).cells
    assert cell["batch_size"] == 8 and cell["samples"] >= 299 and cell["latency_p99_high_s"] >= cell["latency_p99_s"]
    assert "multi-stream p99, 8 a query" in out.stdout and "single-stream: not measured" in out.stdout
    out = cli("run", TINY, "--scenario", "multi-stream", "--batch-sizes", "4", "--db", db)
    assert out.returncode == 2 and "issues queries of 8 images: leave out --batch-sizes 4" in out.stderr
    out = cli("scenarios", "--db", db, "--json")
    assert json.loads(out.stdout)[0]["multi_stream_samples"] >= 299


def test_a_point_disturbed_by_other_processes_is_served_again_once():
    records, emitted = iter([{"qps": 10, "busy_wait_s": 2.0, "disturbed": True, "contention": 0.4},
                             {"qps": 10, "busy_wait_s": 5.0, "disturbed": True, "contention": 0.3}]), []
    waits = []

    def serve_point(waited):
        waits.append(waited)
        return next(records)

    from dnnbench.worker.serving import served_until_undisturbed

    last = served_until_undisturbed(serve_point, 1, lambda kind, **r: emitted.append(kind))
    assert waits == [0.0, 2.0] and emitted == ["again", "point"] and last["disturbed"]  # still busy: flagged
    quiet = served_until_undisturbed(lambda w: {"qps": 10, "busy_wait_s": 0.0, "disturbed": False}, 1,
                                     lambda kind, **r: emitted.append(kind))
    assert not quiet["disturbed"] and emitted[2:] == ["point"]


def test_a_fleet_database_answers_the_load_for_each_machine(tmp_path):
    rows = POINTS + [point("resnet50", 30, 0.030, machine="big"), point("resnet18", 90, 0.020, machine="big")]
    db = tmp_path / "fleet.db"
    with Store(db) as store:
        for name, top1 in (("resnet50", 76.1), ("resnet18", 69.8)):
            store.put_model({"name": name, "input_size": 224, "top1": top1, "accuracy_source": "test"})
        for p in rows:
            store.put_serving(p)
    found = dnnbench.open(db).recommend_serving(25, p99="50ms")
    best = found.best_per_machine  # resnet50 sustains 25 requests/s on the big machine only
    assert best["big"]["model"] == "resnet50" and best["m1"]["model"] == "resnet18"
    text = str(found)
    assert "answered for each of 2 machines" in text and "On big:" in text and "On m1:" in text


def test_a_search_out_of_time_reports_what_it_bracketed():
    now = [0.0]

    def point(qps, k):
        now[0] += 40.0  # each point takes 40 s of the search's 100
        return {"verdict": "pass" if qps <= 37.3 else "fail"}

    found = search(point, 20.0, resolution=0.05, max_points=12, budget_s=100.0, clock=lambda: now[0])
    assert found["points"] == 3 and "the search's 100 s were spent" in found["reason"]
    assert found["passed"] is not None and found["passed"] <= 37.3


# -- recommend --qps --measure: serve only what decides ------------------------------------------------


def test_a_point_is_long_enough_for_its_bound_but_never_past_the_search_budget():
    assert point_seconds(400.0, 299, 10.0, left=60.0) == 10.0  # 897 requests arrive in 2.2 s: the short minimum
    assert point_seconds(30.0, 299, 10.0, left=60.0) == pytest.approx(3 * 299 / 30 + 1)  # 3 bounds' requests
    assert point_seconds(10.0, 299, 10.0, left=12.0) == 12.0  # cut to what is left of the search's time
    assert point_seconds(10.0, 299, 10.0, left=-1.0) == 0.5


def test_only_the_candidates_that_decide_the_load_are_served(tmp_path, synthetic):
    from dnnbench.deciding import serve_to_decide
    from dnnbench.measure.serving import Policy
    from dnnbench.setup import Setup
    from dnnbench.zoo import get

    db = synthetic.make_db(tmp_path / "s.db")  # single-stream cells of resnet50, resnet18, mobilenet_v2, ...
    setup = Setup.of({"machine": "m1", "device": "cpu", "backend": "eager", "precision": "fp32", "threads": 2,
                      "layout": "nchw"})
    peaks = {"resnet18": 45.0, "mobilenet_v2": 90.0}
    served = []

    def serve_one(name):  # as `serve` would: the searched points into the database
        served.append(name)
        with Store(db) as store:
            store.put_serving(point(name, peaks[name], 0.040))
            store.put_serving(point(name, peaks[name] * 1.05, 0.080))

    entries = [get(n) for n in ("resnet50", "resnet18", "mobilenet_v2")]
    # top-1: resnet50 76.1%, mobilenet_v2 71.9%, resnet18 69.8%; one image at a time they were measured
    # at 17, 164 and 38 images/s
    steps = serve_to_decide(entries, setup, Policy(1, 0.005), 0.99, 0.050, 30.0, None,
                            lambda writable: Store(db, create=False), serve_one)
    assert served == ["mobilenet_v2"]  # the most accurate that can reach 30/s, and it sustains 90: the answer
    assert [(s.name, s.action, s.passes) for s in steps] == [
        ("resnet50", "skipped", None), ("mobilenet_v2", "measured", True), ("resnet18", "left", None)]
    assert "17.5 images/s at most, below the load of 30 requests/s" in steps[0].why
    steps = serve_to_decide(entries, setup, Policy(1, 0.005), 0.99, 0.050, 100.0, None,
                            lambda writable: Store(db, create=False), serve_one)
    assert served == ["mobilenet_v2"]  # served once: its peak is read back
    assert [(s.name, s.action, s.passes) for s in steps] == [
        ("resnet50", "skipped", None), ("mobilenet_v2", "measured", False), ("resnet18", "skipped", None)]
    assert steps[1].why == "already served under this limit"


def test_points_stored_before_speeds_were_recorded_still_read(tmp_path, synthetic):
    db = synthetic.make_db(tmp_path / "old.db")
    with Store(db) as store:
        store.put_serving({**POINTS[0], "slowdown": 1.1})
    with sqlite3.connect(db) as con:  # as a release of schema 11 left it
        con.execute("ALTER TABLE serving DROP COLUMN slowdown")
        con.execute("PRAGMA user_version = 11")
    with Store(db, create=False) as store:  # read as it is
        (row,) = store.serving()
        assert row["qps"] == 8 and row.get("slowdown") is None
    with Store(db) as store:  # migrated
        store.put_serving({**POINTS[1], "slowdown": 1.2})
        assert [r["slowdown"] for r in store.serving()] == [None, 1.2]


def test_one_stall_is_not_a_fail_but_late_requests_second_after_second_are():
    arrived = [i / 40 for i in range(200)]  # 5 s at 40 requests a second
    stall = [0.3 if 80 <= i < 86 else 0.02 for i in range(200)]  # six requests caught in one stall
    assert verdict(stall, 0.99, 0.1) == "fail"  # counted as independent requests, it looks like a fail
    assert verdict(stall, 0.99, 0.1, arrived=arrived) == "open"  # over seconds of arrivals, it is one run
    steady = [0.3 if i % 10 == 0 else 0.02 for i in range(200)]  # a tenth late, every second
    assert verdict(steady, 0.99, 0.1, arrived=arrived) == "fail"
    assert verdict([0.02] * 299, 0.99, 0.1, arrived=arrived[:1] * 299) == "pass"


def test_a_pass_must_hold_second_after_second_not_only_over_independent_requests():
    arrived = [i / 60 for i in range(900)]  # 15 s at 60 requests a second
    run = [0.3 if 300 <= i < 303 else 0.02 for i in range(900)]  # three late together: one run of the queue
    spread = [0.3 if i in (100, 400, 700) else 0.02 for i in range(900)]  # three late, seconds apart
    assert verdict(run, 0.99, 0.1) == verdict(spread, 0.99, 0.1) == "pass"  # 900 requests bear three late
    assert verdict(run, 0.99, 0.1, arrived=arrived) == "open"  # a run this long in 15 s: the share is not shown
    assert verdict(spread, 0.99, 0.1, arrived=arrived) == "pass"


def test_a_pass_waits_for_the_queue_to_settle_near_saturation():
    from dnnbench.worker.serving import settled, utilisation

    # 10 ms passes: at half load the queue settles in a fraction of a second, at 95% in about 80 s
    half = {"seconds": 1.5, "passes": 150}  # 3 s of serving, half of it in passes
    assert utilisation(half, 3.0, 1) == pytest.approx(0.5) and settled(half, 3.0, 1)
    near = {"seconds": 2.85, "passes": 285}  # 95% busy
    assert not settled(near, 3.0, 1)  # a 3 s point at 95%: its verdict would be the empty queue's
    assert settled({"seconds": 95.0, "passes": 9500}, 100.0, 1)
    assert not settled({"seconds": 3.0, "passes": 300}, 3.0, 1)  # saturated: never
    assert utilisation({"seconds": 3.0, "passes": 300}, 3.0, 2) == pytest.approx(0.5)  # two instances share it
    idle = {"seconds": 0.0, "passes": 0}
    assert utilisation(idle, 3.0, 1) is None and not settled(idle, 3.0, 1)


def test_a_point_stops_early_only_on_late_requests_second_after_second():
    from dnnbench.worker.serving import _late_throughout

    arrived = [i / 30 for i in range(330)]  # 11 s at 30 requests a second
    one_stall = [0.3 if 150 <= i < 155 else 0.02 for i in range(330)]  # five late together: p99 over 100 ms
    spread = [0.3 if i % 60 == 0 else 0.02 for i in range(330)]  # one late every other second
    assert not _late_throughout(one_stall, 0.99, 0.1, arrived)  # more requests may still pass it
    assert _late_throughout(spread, 0.99, 0.1, arrived)
    assert not _late_throughout([0.02] * 330, 0.99, 0.1, arrived)
