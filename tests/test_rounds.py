"""Rounds: folding a later process's figures into a stored cell (pure), in the store (one
transaction, migration of schema-1 files), and in a real sweep with fresh workers."""

import math
import sqlite3

import pytest

from dnnbench.measure.latency import median_ci, rounds_interval
from dnnbench.store.rounds import complete, first, merge
from dnnbench.setup import cell_key
from dnnbench.store import _FIGURES_V1, _KEY_V1, APPLICATION_ID, SCHEMA_VERSION, Store, _migrate_0_to_1


def cell(samples, batch_size=2, **extra):
    ordered = sorted(samples)
    mid = ordered[len(ordered) // 2]
    row = {"model": "m", "input_size": 224, "machine": "m1", "device": "cpu", "backend": "eager", "precision": "fp32",
           "threads": 2, "batch_size": batch_size, "status": "ok", "error": None, "latency_samples": list(samples),
           "samples": len(samples), "latency_median_s": mid, "stop_reason": "converged",
           "warmup_n": 3, "warmup_s": 0.5, "timed_s": sum(samples), "window_s": sum(samples) + 0.01,
           "cell_wall_s": 2.0, "mem_peak_bytes": 1000, "cold_build_s": 0.25}
    row.update(extra)
    return row


A = [0.010 + i * 1e-5 for i in range(21)]  # median 0.0101
B = [0.011 + i * 1e-5 for i in range(21)]  # median 0.0111


def test_first_round_records_its_median():
    row = first(cell(A))
    assert row["rounds"] == 1 and row["round_medians"] == [pytest.approx(0.0101)]
    failed = first({"status": "oom", "error": "too big"})
    assert failed["rounds"] is None and failed["round_medians"] is None


def test_merge_pools_samples_and_widens_the_interval():
    stored = first(cell(A, mem_peak_bytes=1000))
    out = merge(stored, cell(B, mem_peak_bytes=1200, stop_reason="time_cap", cold_build_s=9.0), rounds=3)
    pooled = sorted(A + B)
    assert out["samples"] == 42 and sorted(out["latency_samples"]) == pooled
    assert out["latency_median_s"] == pytest.approx((pooled[20] + pooled[21]) / 2)
    assert out["rounds"] == 2 and out["round_medians"] == [pytest.approx(0.0101), pytest.approx(0.0111)]
    low, high = rounds_interval(pooled, out["round_medians"])
    assert (out["latency_ci_low_s"], out["latency_ci_high_s"]) == (low, high)
    within = median_ci(pooled)
    assert low < within[0] and high > within[1]  # two rounds 10% apart: far wider than the pooled samples say
    mid = out["latency_median_s"]
    assert out["ci_rel"] == pytest.approx(max(mid - low, high - mid) / mid)
    assert out["time_per_image_s"] == pytest.approx(mid / 2) and out["images_per_s"] == pytest.approx(2 / mid)
    assert out["latency_p90_s"] is not None and out["latency_p99_s"] is None  # 42 samples: no p99
    assert out["mem_peak_bytes"] == 1200  # the larger peak
    assert out["warmup_n"] == 6 and out["cell_wall_s"] == 4.0
    assert out["timed_s"] == pytest.approx(sum(A) + sum(B))
    assert out["stop_reason"] == "time_cap"  # not every round converged
    assert out["cold_build_s"] == 0.25  # cold start: the first process's
    assert out["energy_per_image_j"] is None and out["power_w"] is None


def test_merge_pools_energy_as_joules_over_images_and_seconds():
    stored = first(cell(A, energy_per_image_j=0.5, power_w=10.0, window_s=2.1))
    out = merge(stored, cell(B, energy_per_image_j=0.7, power_w=12.0, window_s=2.4), rounds=3)
    joules = 0.5 * 21 * 2 + 0.7 * 21 * 2
    assert out["energy_per_image_j"] == pytest.approx(joules / (42 * 2))
    assert out["power_w"] == pytest.approx(joules / 4.5)
    # a round without energy: the pooled samples have no energy figure
    out = merge(stored, cell(B), rounds=3)
    assert out["energy_per_image_j"] is None and out["power_w"] is None


def test_a_failed_later_round_keeps_the_figures_and_ends_the_cell():
    stored = first(cell(A))
    out = merge(stored, {"status": "crashed", "error": "the worker died (signal SIGABRT)"}, rounds=3)
    assert out["status"] == "ok" and out["latency_median_s"] == stored["latency_median_s"]
    assert out["rounds"] == 1 and "round 2 of 3 ended in crashed" in out["error"] and "SIGABRT" in out["error"]
    assert complete(out, 3)
    assert merge(out, cell(B), rounds=3) is None


def test_complete_cells_take_no_more_rounds():
    stored = first(cell(A))
    assert not complete(stored, 2) and complete(stored, 1)
    assert merge(stored, cell(B), rounds=1) is None
    two = merge(stored, cell(B), rounds=2)
    assert complete(two, 2) and merge(two, cell(A), rounds=2) is None
    assert complete({"status": "oom", "error": "x", "rounds": None}, 3)


def test_three_rounds_use_t_with_two_degrees_of_freedom():
    stored = first(cell(A))
    C = [0.0105 + i * 1e-5 for i in range(21)]
    out = merge(merge(stored, cell(B), rounds=3), cell(C), rounds=3)
    medians = out["round_medians"]
    logs = [math.log(m) for m in medians]
    mean = sum(logs) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 2)
    half = 4.303 * sd / math.sqrt(3)
    assert out["rounds"] == 3 and out["samples"] == 63
    assert out["latency_ci_high_s"] == pytest.approx(out["latency_median_s"] * math.exp(half))


# ---------------------------------------------------------------------------------------------
# the store


def key(row):
    return cell_key(row)


def test_store_folds_rounds_in_and_counts_them(tmp_path):
    with Store(tmp_path / "r.db") as store:
        run = store.start_run([], {}, {})
        assert store.put_cell(run, cell(A), rounds=3)
        assert store.round_counts(3) == {key(cell(A)): 1}
        assert store.put_cell(run, cell(B), rounds=3)
        (row,) = store.cells(with_samples=True)
        assert row["rounds"] == 2 and row["samples"] == 42 and len(row["round_medians"]) == 2
        assert store.round_counts(3) == {key(cell(A)): 2}
        assert store.round_counts(2) == {key(cell(A)): 2}
        assert store.put_cell(run, cell(A), rounds=2) is False  # complete: left as it is
        assert store.cells()[0]["samples"] == 42
        assert store.put_cell(run, cell(A, batch_size=4, status="oom", error="x"), rounds=3)
        assert store.round_counts(3)[key(cell(A, batch_size=4))] == 3  # failed: nothing more to do


def test_a_runs_cells_of_two_rounds_take_the_drift_pooled_over_them(tmp_path):
    shifted = [[v * f for v in A] for f in (1.0, 1.04, 1.0, 0.97, 1.0, 1.02)]  # three cells, two rounds each
    with Store(tmp_path / "r.db") as store:
        old = store.start_run([], {}, {})
        assert store.put_cell(old, cell(A, batch_size=16), rounds=2)
        assert store.put_cell(old, cell(B, batch_size=16), rounds=2)  # another run's cell: left as it is
        before = {r["batch_size"]: r for r in store.cells()}
        run = store.start_run([], {}, {"cpu": "x"})
        for batch, (first_round, second_round) in zip((1, 2, 4), zip(shifted[::2], shifted[1::2], strict=True),
                                                      strict=True):
            store.put_cell(run, cell(first_round, batch_size=batch), rounds=2)
            store.put_cell(run, cell(second_round, batch_size=batch), rounds=2)
        store.put_cell(run, cell(A, batch_size=8), rounds=2)  # one round: nothing to pool
        own = {r["batch_size"]: r for r in store.cells()}
        drift = store.settle_drift(run)
        assert drift.cells == 3 and drift.df == 3
        logs = [math.log(f) for f in (1.04, 0.97, 1.02)]
        assert drift.sd == pytest.approx(math.sqrt(sum(x * x / 2 for x in logs) / 3), rel=1e-3)
        after = {r["batch_size"]: r for r in store.cells(with_samples=True)}
        for batch in (1, 2, 4):
            row = after[batch]
            low, high = rounds_interval(sorted(row["latency_samples"]), row["round_medians"], drift)
            assert (row["latency_ci_low_s"], row["latency_ci_high_s"]) == (pytest.approx(low), pytest.approx(high))
            assert row["ci_rel"] < own[batch]["ci_rel"]  # t(3) on the run's drift, not t(1) on the cell's own
            assert row["latency_median_s"] == own[batch]["latency_median_s"]
        assert after[8]["ci_rel"] == own[8]["ci_rel"] and after[16]["ci_rel"] == before[16]["ci_rel"]
        (_, this) = store.runs()
        assert this["environment"] == {"cpu": "x", "drift_between_rounds": drift.to_dict()}
        assert store.settle_drift(old) is not None and store.settle_drift(store.start_run([], {}, {})) is None


def test_a_cluster_nodes_drift_reaches_the_drivers_database(tmp_path):
    from dnnbench.cluster import _Writer
    from dnnbench.cluster.node import Forwarding

    messages = []
    with Store(tmp_path / "node.db") as local, Store(tmp_path / "driver.db") as driver:
        node, writer = Forwarding(local, messages.append), _Writer(driver)
        run = node.start_run([], {}, {})
        for batch, factor in ((1, 1.04), (2, 0.97)):
            node.put_cell(run, cell(A, batch_size=batch), rounds=2)
            node.put_cell(run, cell([v * factor for v in A], batch_size=batch), rounds=2)
        drift = node.settle_drift(run)
        for message in messages:
            writer.apply("lab1", message)
        assert [r["environment"]["drift_between_rounds"] for r in driver.runs()] == [drift.to_dict()]
        assert [c["ci_rel"] for c in driver.cells()] == [c["ci_rel"] for c in local.cells()]


def test_a_schema_1_file_is_migrated_and_its_cells_count_as_one_round(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    _migrate_0_to_1(db)
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute("PRAGMA user_version = 1")
    columns = ["run_id", *_KEY_V1, *(c for c, _ in _FIGURES_V1), "measured_at"]
    old = {**cell(A), "run_id": 1, "measured_at": "2026-01-01T00:00:00+00:00", "latency_samples": str(A)}
    db.execute(f"INSERT INTO cells ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
               [old.get(c) for c in columns])
    db.close()
    with Store(path) as store:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        (row,) = store.cells()
        assert row["rounds"] is None and row["latency_median_s"] == pytest.approx(0.0101)
        assert row["machine"] == "unknown"  # its run was not recorded: no machine to attribute it to
        assert store.round_counts(3) == {key(cell(A, machine="unknown")): 1}
        run = store.start_run([], {}, {})
        assert store.put_cell(run, cell(B, machine="unknown"), rounds=3)
        (row,) = store.cells(with_samples=True)
        assert row["rounds"] == 2 and row["samples"] == 42
