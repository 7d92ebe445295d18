"""The sweep end to end: real worker processes, real forward passes, a real SQLite file, and faults
injected on purpose (abort, segfault, a Python error, memory above the cap, a hang, a failed build,
SIGKILL of the sweep, Ctrl-C, two sweeps on one file). No test asserts a time."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dnnbench.runner import RunConfig, Sweep
from dnnbench.runner.plan import ModelJob
from dnnbench.runner.sweep import SweepResult
from dnnbench.setup import Setup
from dnnbench.store import Store
from dnnbench.zoo import get

FAULTY = str(Path(__file__).parent / "data" / "faulty_models.py")
ROOT = Path(__file__).parents[1]


def model(name: str, size: int = 32):
    return get(f"{FAULTY}:{name}", size)


def config(**kw) -> RunConfig:
    # on_busy="measure": the tests' own load must not make them wait; tests/test_busy.py tests the waiting
    base = dict(batch_sizes=(1, 2), setups=(Setup(threads=2),), quick=True, rounds=1, target_ci=0.05, max_seconds_per_cell=0.3, on_busy="measure")
    return RunConfig(**{**base, **kw})


ENV = {"peak_flops": 1.0, "cpu_model": "test"}  # skips the 1 s peak measurement in most tests


def sweep(tmp_path, entries, events=None, **kw):
    with Store(tmp_path / "t.db") as store:
        result = Sweep(store, config(**kw), on_event=(lambda k, d: events.append((k, d))) if events is not None else None,
                       environment=ENV).run(entries)
        cells = {(c["model"].split(":")[-1], c["batch_size"]): c for c in store.cells(with_samples=True)}
    return result, cells


def _plan(events) -> dict:
    """The counts of the sweep's plan event."""
    plan = next(d for k, d in events if k == "plan")
    return {k: plan[k] for k in ("cells", "already", "models", "rounds")}


from clitool import cli as run_cli  # noqa: E402


# ------------------------------------------------------------------------------------------------


def test_cells_have_every_figure(tmp_path):
    events = []
    result, cells = sweep(tmp_path, [model("tiny")], events=events)
    assert set(cells) == {("tiny", 1), ("tiny", 2)}
    for (_, batch), c in cells.items():
        assert c["status"] == "ok" and c["error"] is None
        assert c["samples"] == len(c["latency_samples"]) >= 6
        assert c["latency_ci_low_s"] <= c["latency_median_s"] <= c["latency_ci_high_s"]
        assert c["time_per_image_s"] == pytest.approx(c["latency_median_s"] / batch)
        assert c["images_per_s"] == pytest.approx(batch / c["latency_median_s"])
        assert c["stop_reason"] in ("converged", "time_cap")
        assert c["cold_build_s"] > 0 and c["cold_load_s"] > 0 and c["cold_first_s"] > 0
        assert 0 < c["mem_baseline_bytes"] <= c["mem_loaded_bytes"] * 1.05
        assert c["mem_peak_bytes"] >= c["mem_loaded_bytes"] * 0.95
        assert c["threads"] == 2 and c["device"] == "cpu" and c["backend"] == "eager" and c["precision"] == "fp32"
        if c["energy_source"] is None:
            assert "RAPL" in c["energy_reason"] or "powercap" in c["energy_reason"]
            assert c["energy_per_image_j"] is None and c["power_w"] is None
    assert [k for k, _ in events].count("cell") == 2
    assert _plan(events) == {"cells": 2, "already": 0, "models": 1, "rounds": 1}


def test_a_second_run_in_another_database_is_checked_against_the_first_on_this_machine(tmp_path, monkeypatch):
    from dnnbench.runner.progress import summary
    from dnnbench.store import usual

    monkeypatch.setenv("DNNBENCH_USUAL", str(tmp_path / "usual.sqlite"))
    first_events = []
    (tmp_path / "a").mkdir()
    first, cells = sweep(tmp_path / "a", [model("tiny")], events=first_events)
    assert first.usual.checked == 0 and first.usual.new == 2
    assert all(c["usual_s"] is None for c in cells.values())
    assert any(k == "usual" for k, _ in first_events)
    # a cell others disturbed is checked but not recorded: the machine's usual is not what they made of it
    recorded = {k for k, c in cells.items() if not c["disturbed"]}
    with usual.Record() as record_:
        assert record_.db.execute("SELECT COUNT(*) FROM medians").fetchone()[0] == len(recorded)
    (tmp_path / "b").mkdir()
    second, cells = sweep(tmp_path / "b", [model("tiny")])
    assert second.usual.checked == len(recorded) and second.usual.new == 2 - len(recorded)
    for k, c in cells.items():
        assert c["usual_runs"] == (1 if k in recorded else 0) and bool(c["usual_s"]) == (k in recorded)
        assert (usual.off(c) is None) == (not c["usual_s"] or c["latency_ci_low_s"] <= c["usual_s"] <= c["latency_ci_high_s"])
    with Store(tmp_path / "b" / "t.db") as store:
        text = summary(config(), store.cells(), second)
    assert ("Against this machine's usual time for each cell (the median of its 1 earlier run(s)" in text) == bool(recorded)


def test_a_record_of_usual_times_that_cannot_be_read_leaves_the_run_whole_and_says_so(tmp_path, monkeypatch):
    bad = tmp_path / "usual.sqlite"
    bad.write_bytes(b"garbage, not SQLite" * 200)
    monkeypatch.setenv("DNNBENCH_USUAL", str(bad))
    events = []
    result, cells = sweep(tmp_path, [model("tiny")], events=events)
    assert result.usual is None and all(c["status"] == "ok" for c in cells.values()) and len(cells) == 2
    [note] = [d["text"] for k, d in events if k == "note" and "usual" in d["text"]]
    assert "cannot be used" in note and "move" in note and "not checked" in note
    assert bad.read_bytes().startswith(b"garbage")  # a cache it cannot read is left as it is


def test_rounds_add_fresh_processes_and_resume_by_round(tmp_path, monkeypatch):
    monkeypatch.setenv("DNNBENCH_TEST_MARKER", str(tmp_path / "marker"))
    entries = [model("tiny"), model("aborts_at_2_in_a_later_process")]
    events = []
    _, one = sweep(tmp_path, entries, rounds=1)
    assert {c["rounds"] for c in one.values()} == {1}
    result, cells = sweep(tmp_path, entries, events=events, rounds=2)  # one more round of every cell
    assert _plan(events) == {"cells": 4, "already": 0, "models": 2, "rounds": 2}
    workers = [d for k, d in events if k == "worker"]
    assert sorted((d["model"].split(":")[-1], d["round"]) for d in workers) == [
        ("aborts_at_2_in_a_later_process", 2), ("tiny", 2)]  # in the round's random order
    for b in (1, 2):
        c, before = cells[("tiny", b)], one[("tiny", b)]
        assert c["rounds"] == 2 and c["error"] is None and len(c["round_medians"]) == 2
        assert c["samples"] == len(c["latency_samples"]) > before["samples"]
        assert c["round_medians"][0] == before["latency_median_s"]
        assert c["latency_ci_low_s"] <= c["latency_median_s"] <= c["latency_ci_high_s"]
    assert cells[("aborts_at_2_in_a_later_process", 1)]["rounds"] == 2
    failed = cells[("aborts_at_2_in_a_later_process", 2)]
    assert failed["status"] == "ok" and failed["rounds"] == 1  # the first round's figures are kept
    assert failed["latency_median_s"] == one[("aborts_at_2_in_a_later_process", 2)]["latency_median_s"]
    assert "round 2 of 2 ended in crashed" in failed["error"] and "SIGABRT" in failed["error"]
    # the second round took no memory peak again: the cells keep the first round's
    assert all(m["mem_peak_bytes"] is None for m in result.measured if m["status"] == "ok")
    assert all(cells[k]["mem_peak_bytes"] == one[k]["mem_peak_bytes"] for k in cells)
    # the three cells of two rounds share one estimate of the drift between rounds (a cell the suite's own
    # load disturbed stays out of it, as it would out of a user's)
    quiet = [k for k, c in cells.items() if c["rounds"] == 2 and not c["disturbed"]]
    assert result.drift.cells == result.drift.df == (len(quiet) or 3)
    result, _ = sweep(tmp_path, entries, rounds=2)  # nothing left to do
    assert result.measured == [] and result.already == 4


def test_a_first_pass_of_seconds_is_the_whole_warm_up_of_each_round(tmp_path):
    _, cells = sweep(tmp_path, [model("long_pass_at_2")], rounds=2)
    short, long = cells[("long_pass_at_2", 1)], cells[("long_pass_at_2", 2)]
    assert short["rounds"] == long["rounds"] == 2
    assert short["warmup_n"] >= 2  # passes of milliseconds warm up until two agree, in each round
    assert long["warmup_n"] == 0  # no pass but the first ran untimed, in either round
    assert long["samples"] == 6 and min(long["latency_samples"]) >= 0.55  # three timed passes a round


def test_resume_measures_only_what_is_missing(tmp_path):
    _, first = sweep(tmp_path, [model("tiny")], batch_sizes=(1,))
    result, cells = sweep(tmp_path, [model("tiny")], batch_sizes=(1, 2))
    assert result.already == 1 and [m["batch_size"] for m in result.measured] == [2]
    assert cells[("tiny", 1)]["measured_at"] == first[("tiny", 1)]["measured_at"]
    result, _ = sweep(tmp_path, [model("tiny")], batch_sizes=(1, 2))
    assert result.measured == [] and result.already == 2


def test_abort_is_recorded_as_crashed_and_the_sweep_goes_on(tmp_path):
    _, cells = sweep(tmp_path, [model("aborts_at_4"), model("tiny")], batch_sizes=(1, 4, 8))
    assert cells[("aborts_at_4", 1)]["status"] == "ok"
    crashed = cells[("aborts_at_4", 4)]
    assert crashed["status"] == "crashed"
    assert "SIGABRT" in crashed["error"] and "about to abort" in crashed["error"]
    assert cells[("aborts_at_4", 8)]["status"] == "ok"  # a fresh worker measured the rest
    assert all(cells[("tiny", b)]["status"] == "ok" for b in (1, 4, 8))


def test_segfault_is_recorded_with_the_traceback(tmp_path):
    _, cells = sweep(tmp_path, [model("segfaults_at_2")], batch_sizes=(1, 2, 4))
    assert cells[("segfaults_at_2", 2)]["status"] == "crashed"
    assert "SIGSEGV" in cells[("segfaults_at_2", 2)]["error"]
    assert "Segmentation fault" in cells[("segfaults_at_2", 2)]["error"]  # faulthandler's report
    assert cells[("segfaults_at_2", 1)]["status"] == cells[("segfaults_at_2", 4)]["status"] == "ok"


def test_python_error_in_one_batch_size(tmp_path):
    _, cells = sweep(tmp_path, [model("raises_at_2")], batch_sizes=(1, 2, 4))
    assert cells[("raises_at_2", 2)]["status"] == "error"
    assert "rejects batches of 2" in cells[("raises_at_2", 2)]["error"]
    assert cells[("raises_at_2", 4)]["status"] == "ok"


def test_memory_above_the_cap_is_oom_and_larger_batches_are_skipped(tmp_path):
    _, cells = sweep(tmp_path, [model("hogs_at_4"), model("tiny")], batch_sizes=(1, 4, 8), max_memory=1_400_000_000)
    assert cells[("hogs_at_4", 1)]["status"] == "ok"
    oom = cells[("hogs_at_4", 4)]
    assert oom["status"] == "oom" and "--max-memory" in oom["error"]
    assert cells[("hogs_at_4", 8)]["status"] == "oom"
    assert cells[("hogs_at_4", 8)]["error"].startswith("skipped: batch size 4")
    assert cells[("tiny", 8)]["status"] == "ok"


def test_hang_is_a_timeout(tmp_path):
    # limits of 10 s: far below the hang's 600 s, far above what a tiny model's start-up takes on a busy machine
    _, cells = sweep(tmp_path, [model("hangs_at_2")], batch_sizes=(1, 2, 4), timeout_s=10)
    assert cells[("hangs_at_2", 1)]["status"] == "ok"
    assert cells[("hangs_at_2", 2)]["status"] == "timeout" and "10 s" in cells[("hangs_at_2", 2)]["error"]
    assert cells[("hangs_at_2", 4)]["status"] == "timeout"


def test_model_that_cannot_be_built(tmp_path):
    _, cells = sweep(tmp_path, [model("fails_to_build")])
    assert [cells[("fails_to_build", b)]["status"] for b in (1, 2)] == ["error", "error"]
    assert "constructor failed on purpose" in cells[("fails_to_build", 1)]["error"]


# user code runs only in workers: every way a model can end or stall its process is recorded as a cell


def test_a_model_that_aborts_on_every_pass_never_takes_the_sweep_down(tmp_path):
    _, cells = sweep(tmp_path, [model("aborts_always"), model("tiny")])
    assert {cells[("aborts_always", b)]["status"] for b in (1, 2)} == {"crashed"}
    assert "first forward pass" in cells[("aborts_always", 1)]["error"]
    assert cells[("tiny", 2)]["status"] == "ok"


def test_a_constructor_that_hangs_is_stopped_at_the_timeout(tmp_path):
    started = time.monotonic()
    _, cells = sweep(tmp_path, [model("hangs_in_constructor"), model("tiny")], timeout_s=10)
    assert time.monotonic() - started < 120  # not the model's 600 s
    error = cells[("hangs_in_constructor", 1)]["error"]
    assert cells[("hangs_in_constructor", 1)]["status"] == "timeout" and "building the model" in error and "longer than 10 s" in error
    assert "--timeout" in error and "--retry-failed" in error
    assert cells[("tiny", 1)]["status"] == "ok"


def test_a_hang_on_real_input_only_is_stopped_at_the_timeout(tmp_path):
    _, cells = sweep(tmp_path, [model("hangs_on_real_input")], timeout_s=10)
    assert cells[("hangs_on_real_input", 1)]["status"] == "timeout"
    assert "the first forward pass took longer than 10 s" in cells[("hangs_on_real_input", 1)]["error"]


def test_a_failing_first_pass_is_not_called_a_failed_build(tmp_path):
    _, cells = sweep(tmp_path, [model("raises_always")])
    error = cells[("raises_always", 1)]["error"]
    assert error.startswith("the first forward pass failed: ValueError") and "build" not in error


def test_sys_exit_in_forward_is_an_error_of_that_batch_size(tmp_path):
    result, cells = sweep(tmp_path, [model("exits_at_2")], batch_sizes=(1, 2, 4))
    assert cells[("exits_at_2", 2)]["status"] == "error"
    assert "sys.exit(0)" in cells[("exits_at_2", 2)]["error"]
    assert cells[("exits_at_2", 1)]["status"] == cells[("exits_at_2", 4)]["status"] == "ok"


def test_a_kill_from_outside_is_killed_not_oom_and_the_rest_is_measured(tmp_path):
    _, cells = sweep(tmp_path, [model("killed_at_2")], batch_sizes=(1, 2, 4))
    killed = cells[("killed_at_2", 2)]
    assert killed["status"] == "killed" and "SIGKILL" in killed["error"] and "--retry-failed" in killed["error"]
    assert cells[("killed_at_2", 4)]["status"] == "ok"  # not skipped as if memory ran out


def test_a_child_the_worker_forked_neither_stalls_the_sweep_nor_outlives_it(tmp_path, monkeypatch):
    marker = tmp_path / "child"
    monkeypatch.setenv("DNNBENCH_TEST_MARKER", str(marker))
    started = time.monotonic()
    _, cells = sweep(tmp_path, [model("forks_a_lingering_child")], timeout_s=30)
    assert time.monotonic() - started < 60
    assert {c["status"] for c in cells.values()} == {"ok"}
    child = int(marker.read_text())
    for _ in range(100):  # the group was killed; the kernel reaps the orphan through init
        if not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"the worker's child {child} outlived it")


def test_static_figures_are_counted_in_the_worker(tmp_path):
    sweep(tmp_path, [model("tiny")])
    with Store(tmp_path / "t.db") as store:
        (row,) = store.models()
    assert row["macs"] == 3 * 8 * 9 * 32 * 32 + 8 * 10 and row["params"] == 3 * 8 * 9 + 8 + 8 * 10 + 10


def test_model_output_does_not_disturb_the_results(tmp_path):
    _, cells = sweep(tmp_path, [model("chatty")])
    assert all(c["status"] == "ok" and c["samples"] >= 6 for c in cells.values())


def test_peak_memory_does_not_depend_on_what_ran_before(tmp_path):
    """Batch size 1 after batch size 64 in the same worker has the peak of batch size 1 alone."""
    entry = get("resnet18", 112)
    cfg = config(batch_sizes=(1, 64))
    with Store(tmp_path / "t.db") as store:
        sweep_ = Sweep(store, cfg, environment=ENV)
        alone = SweepResult(store.start_run([], {}, {}))
        setup = cfg.setups[0].on("m1")
        sweep_._run_job(ModelJob(entry.name, 112, setup, (1,), cfg), alone)
        with store.db:
            store.db.execute("DELETE FROM cells")
        after = SweepResult(store.start_run([], {}, {}))
        sweep_._run_job(ModelJob(entry.name, 112, setup, (64, 1), cfg), after)
    peak_alone = alone.measured[0]["mem_peak_bytes"]
    peak_64, peak_after = (m["mem_peak_bytes"] for m in after.measured)
    assert peak_64 > peak_alone + 100e6  # batch 64 really needs more
    # without the reset, batch 1 would report batch 64's peak; allow 5% of that difference
    assert abs(peak_after - peak_alone) < 0.05 * (peak_64 - peak_alone)


_FAULTS = """
import resource, sys
import numpy as np
from dnnbench.measure import memory
memory.speed_mode()  # as every worker starts: memory mode must undo it
getattr(memory, sys.argv[1])()
faults = []
for _ in range(6):  # a pass's activations: 48 MiB written, then freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    np.ones(12 << 20, dtype=np.float32).sum()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[3:]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_in_speed_mode_a_pass_in_steady_state_faults_no_page_in_and_in_memory_mode_it_does():
    """glibc maps a block above 32 MiB apart and unmaps it when freed: each pass faulted it in again
    (efficientnet_b1 at batch 16: half its time in eager). Speed mode keeps it; memory mode must not."""
    def faults(mode):
        done = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
        return int(done.stdout.split()[-1])

    mapped_apart = faults("memory_mode")
    assert mapped_apart >= 3 * 24  # three passes of 48 MiB: a fault per page of 2 MiB at least (numpy asks for huge pages)
    assert faults("speed_mode") * 20 < mapped_apart


# ------------------------------------------------------------------------------------------------
# the command line: kill, interrupt, concurrency, export, bad input


def _cli_run(db, *models, batch="1,2,4", extra=()):
    names = [f"{FAULTY}:{m}" for m in models]
    return [sys.executable, "-m", "dnnbench", "run", *names, "--input-size", "32", "--batch-sizes", batch,
            "--db", str(db), "--quick", "--rounds", "1", "--max-seconds-per-cell", "0.3", "--threads", "1", "--on-busy", "measure", *extra]


def _rows(db):
    with sqlite3.connect(db) as con:
        return con.execute("SELECT model, batch_size, status, measured_at FROM cells").fetchall()


def _wait_for_cells(db, n, proc, limit=120):
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if db.exists():
            try:
                if len(_rows(db)) >= n:
                    return
            except sqlite3.OperationalError:
                pass
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    raise AssertionError("no cell appeared")


def test_sigkill_then_resume_loses_nothing_and_repeats_nothing(tmp_path):
    db = tmp_path / "k.db"
    proc = subprocess.Popen(_cli_run(db, "slow", "slow2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_cells(db, 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _rows(db)
    assert 2 <= len(before) < 6
    done = subprocess.run(_cli_run(db, "slow", "slow2"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    after = _rows(db)
    assert len(after) == 6 and len({(m, b) for m, b, _, _ in after}) == 6
    assert set(before) <= set(after)  # the cells taken before the kill are untouched
    assert f"{6 - len(before)} cells to measure" in done.stderr


def test_ctrl_c_stops_cleanly_and_keeps_the_cells(tmp_path):
    db = tmp_path / "c.db"
    # far more work than the time to the first cell: the sweep cannot finish before the signal lands
    proc = subprocess.Popen(_cli_run(db, "slow", "slow2", batch="1,2,3,4,5,6,7,8", extra=("--max-seconds-per-cell", "2")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_cells(db, 1, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT outcome FROM runs").fetchone()[0] == "interrupted"
        assert con.execute("SELECT COUNT(*) FROM cells").fetchone()[0] >= 1


def test_two_sweeps_measure_one_after_the_other_and_split_the_cells(tmp_path):
    db = tmp_path / "two.db"
    procs = [subprocess.Popen(_cli_run(db, *models), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for models in (("slow", "tiny"), ("tiny", "slow"))]
    errs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        errs.append(err)
        # each sweep accounts for the 6 cells of its table: those it measured, and those the other did
        counts = re.search(r"(\d+) cells measured now, (\d+) failed, (\d+) complete cells taken", out)
        assert sum(int(n) for n in counts.groups()) == 6, out
    rows = _rows(db)
    assert len(rows) == 6 and len({(m, b) for m, b, _, _ in rows}) == 6
    assert sum("another dnnbench sweep is measuring on this machine" in e for e in errs) == 1
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        runs = con.execute("SELECT started_at, finished_at, outcome FROM runs ORDER BY started_at").fetchall()
    # the machine measured one thing at a time: the second run began measuring after the first ended
    assert [r[2] for r in runs] == ["complete", "complete"] and runs[1][0] >= runs[0][1]


def test_a_run_that_measured_nothing_says_so_in_its_exit_status(tmp_path):
    out = subprocess.run(_cli_run(tmp_path / "m.db", "tiny", batch="1", extra=("--max-memory", "1MB")),
                         capture_output=True, text=True)
    assert _rows(tmp_path / "m.db")[0][2] == "oom"
    assert out.returncode == 4 and "dnnbench: no cell asked for was measured" in out.stderr, out.stderr


def test_ctrl_c_while_waiting_for_the_machine(tmp_path):
    from dnnbench.runner.lock import machine_lock

    with machine_lock():  # another sweep is measuring
        proc = subprocess.Popen(_cli_run(tmp_path / "w.db", "tiny"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        err = ""
        while "another dnnbench sweep" not in err:
            line = proc.stderr.readline()
            assert line, "the second sweep never said it waits"
            err += line
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in rest


def test_export_csv_and_json(tmp_path):
    db = tmp_path / "e.db"
    assert subprocess.run(_cli_run(db, "tiny", batch="1,2"), capture_output=True).returncode == 0
    out = run_cli("export", "--format", "json", "--db", str(db))
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    issue_keys = ["model", "device", "backend", "precision", "batch_size", "status", "error", "latency_median_s",
                  "latency_p90_s", "latency_p99_s", "latency_ci_low_s", "latency_ci_high_s", "samples",
                  "images_per_s", "time_per_image_s", "cold_build_s", "cold_load_s", "cold_first_s",
                  "mem_baseline_bytes", "mem_loaded_bytes", "mem_peak_bytes", "energy_per_image_j", "power_w",
                  "run_id", "measured_at"]
    assert len(rows) == 2 and all(list(r)[:len(issue_keys)] == issue_keys for r in rows)
    assert rows[0]["backend"] == "eager" and rows[0]["precision"] == "fp32"
    csv_path = tmp_path / "out.csv"
    assert run_cli("export", "--db", str(db), "--out", str(csv_path)).returncode == 0
    lines = csv_path.read_text().splitlines()
    assert lines[0].split(",")[:len(issue_keys)] == issue_keys and len(lines) == 3


@pytest.mark.parametrize("args, message", [
    (["run", "resnet18", "--batch-sizes", "1,0"], "bad batch size '0'"),
    (["run", "resnet18", "--batch-sizes", "a"], "bad batch size"),
    (["run", "resnet18", "--device", "tpu"], "unknown device 'tpu'"),
    (["run", "resnet18", "--max-memory", "lots"], "cannot read memory size 'lots'"),
    (["run", "resnet18", "--target-ci", "2"], "expected a fraction"),
    (["run", "resnet5"], "unknown model 'resnet5'"),
    (["run"], "no models given"),
    (["export", "--db", "missing.db"], "no database at missing.db"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    out = run_cli(*args, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and message in out.stderr and "Traceback" not in out.stderr


def test_no_gpu_is_a_clear_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = run_cli("run", "resnet18", "--device", "cuda", cwd=tmp_path)
    assert out.returncode == 2 and "no usable CUDA GPU" in out.stderr and "--device cpu" in out.stderr


def test_a_foreign_database_is_never_overwritten(tmp_path):
    db = tmp_path / "notes.db"
    db.write_bytes(b"my notes, not a database\n" * 100)
    before = db.read_bytes()
    out = run_cli("run", f"{FAULTY}:tiny", "--db", str(db), cwd=tmp_path)
    assert out.returncode == 2 and "not a dnnbench database" in out.stderr
    assert db.read_bytes() == before


# ------------------------------------------------------------------------------------------------
# the fork server: workers forked from a process that has imported the libraries


def _job(store, entry, batches, fork_server: bool):
    cfg = config(batch_sizes=batches)
    sweep_ = Sweep(store, cfg, environment=ENV, fork=fork_server)
    result = SweepResult(store.start_run([], {}, {}))
    try:
        sweep_._run_job(ModelJob(entry.name, entry.input_size, cfg.setups[0].on("m1"), batches, cfg), result)
    finally:
        sweep_.close()
    return result.measured


@pytest.mark.parametrize("name", ["resnet18", str(Path(__file__).parent / "data" / "user_models.py") + ":convnet"],
                         ids=["registry", "user file"])
def test_a_forked_worker_measures_memory_as_a_fresh_process_does(tmp_path, name):
    """The memory-order test, fork against spawn: the same job in a worker forked from its server (with
    torchvision for a registry model, without for a user's file) and in a fresh process, each after the
    other, gives the same memory figures."""
    entry = get(name, 112)
    with Store(tmp_path / "t.db") as store:
        figures = {}
        for fork in (True, False, True):
            with store.db:
                store.db.execute("DELETE FROM cells")
            cells = _job(store, entry, (1, 16), fork)
            assert [c["status"] for c in cells] == ["ok", "ok"], cells
            figures.setdefault(fork, []).append(cells)
    (forked, again), (fresh,) = figures[True], figures[False]
    for f, s in zip(forked, fresh, strict=True):
        for key in ("mem_baseline_bytes", "mem_loaded_bytes", "mem_peak_bytes"):
            assert abs(f[key] - s[key]) < 0.02 * s[key], (key, f[key], s[key])
    # batch 16 really needs more memory than batch 1, in both; and a forked worker is not marked by the last
    assert forked[1]["mem_peak_bytes"] > forked[0]["mem_peak_bytes"] + 20e6
    assert abs(again[0]["mem_peak_bytes"] - forked[0]["mem_peak_bytes"]) < 0.05 * forked[0]["mem_peak_bytes"]


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "fresh"])
def test_a_worker_runs_with_the_job_environment_however_it_starts(tmp_path, fork):
    import re
    import tempfile

    from dnnbench.launch import Job, Launcher
    from dnnbench.worker import LATENCY

    entry = model("tells_its_environment")
    cfg = config(batch_sizes=(1,))
    job = ModelJob(entry.name, entry.input_size, cfg.setups[0].on("m1"), (1,), cfg)
    scratch = tempfile.mkdtemp(prefix="dnnbench-worker-", dir=tmp_path)
    with Launcher(2, preload=fork) as launcher:
        worker = launcher.start(Job(LATENCY, job.spec(static=False, busy={}), 2, scratch, preload="torch"))
        records = list(worker.records(idle_limit=120))
        worker.end()  # spared its teardown: it said its end
        assert worker.finished and worker.status == 0
        assert type(worker.proc).__name__ == "Forked"  # either way a child of the launcher's server
    (fatal,) = [r for r in records if r["type"] == "fatal"]
    told = dict(re.findall(r"(\w+)=(\S+)", fatal["error"]))
    assert told["tmp"] == scratch  # the job's own folder
    assert told["torch_threads"] == told["omp"] == "2" and told["cuda_initialized"] == "False"
    assert int(told["process_threads"]) <= 3  # the main thread and at most torch's 2-thread pool


def test_the_fork_server_imports_once_and_forks_from_one_thread():
    import os

    from dnnbench.launch.forkserver import ForkServer

    server = ForkServer(dict(os.environ))
    try:
        ready = server.wait_ready()
        assert ready["threads"] == 1 and ready["missing"] == [] and ready["import_s"] > 0
        assert ready["preloaded"] == "models"
    finally:
        server.close()


def test_a_fork_server_that_dies_is_replaced_by_fresh_processes_and_loses_no_cell(tmp_path):
    events = []
    with Store(tmp_path / "t.db") as store:
        sweep_ = Sweep(store, config(), on_event=lambda k, d: events.append((k, d)), environment=ENV)
        server = sweep_.launcher.server("models")
        server.wait_ready()
        server.proc.kill()  # as if the kernel's OOM killer took it
        server.proc.wait()
        result = sweep_.run([get("resnet18", 64)])
        cells = {(c["model"], c["batch_size"]): c["status"] for c in store.cells()}
    assert cells == {("resnet18", 1): "ok", ("resnet18", 2): "ok"}
    notes = [d["text"] for k, d in events if k == "note"]
    assert any("workers start as fresh processes" in n and "fork server is unavailable" in n for n in notes), notes
    assert len(result.measured) == 2


def test_a_user_model_file_forks_from_a_server_without_torchvision_and_a_registry_model_from_one_with_it(tmp_path):
    """A user's file may not import torchvision: the models' server's would count in its memory."""
    starts = []
    with Store(tmp_path / "t.db") as store:
        sweep_ = Sweep(store, config(batch_sizes=(1,)), environment=ENV)
        original = sweep_.launcher.start

        def start(job):
            starts.append((job.scenario.rsplit(".", 1)[-1], job.preload))
            return original(job)

        sweep_.launcher.start = start
        sweep_.run([model("tiny"), get("resnet18", 64)])
        assert {c["status"] for c in store.cells()} == {"ok"}
    # each model's latency worker and its two restarts from the files, forked from the same server
    assert sorted(starts) == [("latency", "models"), ("latency", "torch"), *[("restart", "models")] * 2,
                              *[("restart", "torch")] * 2]


def test_the_run_records_the_software_its_allocator_and_the_peak_of_each_precision_measured_by_a_worker(tmp_path):
    cfg = config(batch_sizes=(1,), setups=(Setup(threads=2), Setup(threads=2, precision="bf16")))
    with Store(tmp_path / "t.db") as store:
        Sweep(store, cfg).run([get("squeezenet1_1", 32)])  # no environment given: the probe measures it
        (run,) = store.runs()
    env = run["environment"]
    assert env["torch"] and env["cpu_model"] and env["threads"] == 2 and env["interop_threads"] == 1
    # the worker contract put the allocator in speed mode (`measure.memory`), as every worker's
    assert env["allocator"] == ("kept" if sys.platform.startswith("linux") else "system")
    peaks = env["peak_by_precision"]
    assert set(peaks) == {"fp32", "bf16"} and all(p["peak_flops"] > 0 for p in peaks.values())
    assert env["peak_flops"] == peaks["fp32"]["peak_flops"] and "torch.mm" in peaks["bf16"]["peak_flops_method"]
