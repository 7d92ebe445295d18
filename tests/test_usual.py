"""This machine's usual time for each cell (`store.usual`): the record across runs and databases, the
check of a run's cells against it, and what the run's summary says."""

from __future__ import annotations

import pytest

from dnnbench.errors import UserError
from dnnbench.runner.progress import _usual, _usual_lines
from dnnbench.store import usual

KEY = {"model": "resnet18", "input_size": 224, "machine": "m1", "device": "cpu", "backend": "eager",
       "precision": "fp32", "threads": 2, "layout": "nchw"}
STAMP = usual.stamp({"torch": "2.14.1", "python": "3.12.1"})


def cell(batch: int = 1, median: float = 0.010, rel: float = 0.02, machine: str = "m1", **more) -> dict:
    return {**KEY, "machine": machine, "batch_size": batch, "latency_median_s": median,
            "latency_ci_low_s": median * (1 - rel), "latency_ci_high_s": median * (1 + rel),
            "measured_at": more.pop("measured_at", "2026-12-06T10:00:00"), **more}


def test_the_record_is_the_environments_file_else_the_users_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("DNNBENCH_USUAL", str(tmp_path / "r.sqlite"))
    assert usual.record_path() == tmp_path / "r.sqlite"
    monkeypatch.delenv("DNNBENCH_USUAL")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert usual.record_path() == tmp_path / "cache" / "dnnbench" / "usual.sqlite"


def test_a_cell_s_usual_time_is_the_median_of_its_earlier_runs_not_of_this_one(tmp_path):
    record = usual.Record(tmp_path / "r.sqlite")
    [first] = record.usual([cell()], STAMP, "run-a")
    assert first["usual_s"] is None and first["usual_runs"] == 0
    for i, (run, median) in enumerate((("run-a", 0.010), ("run-b", 0.012), ("run-c", 0.011))):
        record.add([cell(median=median, measured_at=f"2026-12-06T10:0{i}")], STAMP, run)
    [found] = record.usual([cell()], STAMP, "run-d")
    assert found["usual_s"] == pytest.approx(0.011) and found["usual_runs"] == 3
    [own] = record.usual([cell()], STAMP, "run-c")  # a run is never its own usual
    assert own["usual_s"] == pytest.approx(0.011) and own["usual_runs"] == 2
    # another batch size, machine or set of library versions has a usual of its own
    other = usual.stamp({"torch": "2.15.0", "python": "3.12.1"})
    assert [f["usual_runs"] for f in record.usual([cell(batch=8), cell(machine="m2")], STAMP, "x")] == [0, 0]
    assert record.usual([cell()], other, "x")[0]["usual_runs"] == 0
    record.close()


def test_the_record_keeps_the_latest_runs_of_each_cell(tmp_path):
    record = usual.Record(tmp_path / "r.sqlite")
    for i in range(usual.KEEP + 5):
        record.add([cell(median=0.001 * (i + 1), measured_at=f"2026-12-06T10:{i:02d}:00")], STAMP, f"run-{i}")
    [found] = record.usual([cell()], STAMP, "now")
    assert found["usual_runs"] == usual.KEEP
    kept = sorted(r[0] for r in record.db.execute("SELECT median_s FROM medians"))
    assert kept[0] == pytest.approx(0.006)  # the five oldest went
    record.close()


def test_a_cell_is_off_its_usual_only_where_its_interval_excludes_it():
    assert usual.off(cell(median=0.010, rel=0.02, usual_s=0.0101)) is None
    assert usual.off(cell(median=0.010, rel=0.02, usual_s=None)) is None
    assert usual.off(cell(median=0.011, rel=0.02, usual_s=0.010)) == pytest.approx(1.1)
    assert usual.off(cell(median=0.009, rel=0.02, usual_s=0.010)) == pytest.approx(0.9)


def test_the_run_as_a_whole_against_its_usual_and_the_words_for_it():
    cells = [cell(batch=b, median=0.0108, usual_s=0.010, usual_runs=r) for b, r in ((1, 2), (2, 3), (4, 3))]
    found = usual.against(cells + [cell(batch=8, usual_s=None, usual_runs=0)])
    assert (found.checked, found.off, found.runs, found.new) == (3, 3, (2, 3), 1)
    assert found.ratio == pytest.approx(1.08)
    [line] = _usual_lines(found)
    assert "ran at 1.08x it" in line and "3 of them lie outside" in line and "slower than usual" in line
    assert "2 to 3 earlier run(s)" in line and "1 cells had no earlier run" in line
    assert _usual(cells[0]) == "1.08x off" and _usual(cell(usual_s=0.0101)) == "0.99x" and _usual(cell()) == "-"
    [new] = _usual_lines(usual.against([cell()]))
    assert new.startswith("No earlier run of these 1 cells") and "a later run can differ by more" in new
    assert _usual_lines(None) == []


def test_a_record_that_cannot_be_opened_says_which_file_and_the_fix(tmp_path):
    bad = tmp_path / "r.sqlite"
    bad.write_bytes(b"not a database at all, just some bytes" * 100)
    with pytest.raises(UserError, match="cannot be used .*move .*r.sqlite aside"):
        usual.Record(bad)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="DNNBENCH_USUAL"):
        usual.Record(blocker / "r.sqlite")  # its folder is a file


def test_a_stored_cell_takes_its_usual_time(tmp_path):
    from dnnbench.store import Store

    with Store(tmp_path / "a.db") as store:
        store.register_machine("m1", {"cpu": "x", "cores": 2, "memory_gib": 1, "gpu": None})
        run = store.start_run([], {}, {})
        store.put_cell(run, {**cell(), "status": "ok", "samples": 30, "latency_samples": [0.01] * 30})
        [stored] = store.cells_of_run(run)
        store.put_usual([{**{k: stored[k] for k in usual.CELL_KEY}, "usual_s": 0.0095, "usual_runs": 4}])
        [after] = store.cells()
        assert (after["usual_s"], after["usual_runs"]) == (0.0095, 4)
        assert store.cells_of_run(run + 1) == []
