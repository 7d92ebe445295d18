"""The results database: round trips, refusals that leave foreign files untouched, concurrent writers."""

import hashlib
import multiprocessing
import os
import sqlite3

import pytest

from dnnbench.errors import UserError
from dnnbench.setup import cell_key
from dnnbench.store import _KEY_V1, APPLICATION_ID, SCHEMA_VERSION, Store


def make_cell(model="resnet18", batch_size=1, status="ok", **extra):
    cell = {"model": model, "input_size": 224, "machine": "m1", "device": "cpu", "backend": "eager",
            "precision": "fp32", "threads": 4, "batch_size": batch_size, "status": status}
    cell.update(extra)
    return cell


def key_of(cell):
    return cell_key(cell)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def count_cells(path):
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM cells").fetchone()[0]


def write_cells(path, models, batch_sizes, barrier):
    """A child process: wait for the other, then open the store and write one cell per (model, batch)."""
    barrier.wait()
    with Store(path) as store:
        run = store.start_run(["child", str(os.getpid())], {}, {})
        stored = sum(store.put_cell(run, make_cell(m, b, latency_median_s=0.01))
                     for m in models for b in batch_sizes)
        store.finish_run(run, "done")
    return stored


def open_new(path, barrier):
    """A child process: wait for the other, then open (and so create) a new store; the error, if any."""
    barrier.wait()
    try:
        Store(path).close()
    except UserError as exc:
        return str(exc)
    return None


def refused(path, *words):
    """Opening ``path`` raises a UserError naming it (and ``words``) and leaves its bytes unchanged."""
    before = digest(path) if path.is_file() else None
    with pytest.raises(UserError) as info:
        Store(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message.lower(), message
    if before is not None:
        assert digest(path) == before
    return message


# ---------------------------------------------------------------------------------------------
# a new database


def test_new_file_is_marked_and_uses_wal(tmp_path):
    path = tmp_path / "results.db"
    Store(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_round_trip(tmp_path):
    with Store(tmp_path / "r.db") as store:
        run = store.start_run(["dnnbench", "run", "x"], {"preset": "quick"}, {"cpu": "test"})
        samples = [0.011, 0.0125, 0.0101]
        assert store.put_cell(run, make_cell("b", 2, latency_median_s=0.0125, samples=3,
                                             latency_samples=samples, stop_reason="converged"))
        assert store.put_cell(run, make_cell("a", 1, status="oom", error="too big"))
        store.finish_run(run, "complete")
        store.put_model({"name": "a", "input_size": 224, "family": "resnet", "params": 11_689_512, "top1": 69.76})

        assert store.done_keys() == {key_of(make_cell("a", 1)), key_of(make_cell("b", 2))}
        assert store.done_keys(("ok",)) == {key_of(make_cell("b", 2))}

        rows = store.cells()
        assert [r["model"] for r in rows] == ["a", "b"]
        assert "latency_samples" not in rows[0]
        a, b = rows
        assert (a["status"], a["error"], a["run_id"]) == ("oom", "too big", run)
        assert b["latency_median_s"] == 0.0125 and b["samples"] == 3 and b["stop_reason"] == "converged"
        assert b["measured_at"]

        full = {r["model"]: r for r in store.cells(with_samples=True)}
        assert full["b"]["latency_samples"] == samples
        assert full["a"]["latency_samples"] is None

        (r,) = store.runs()
        assert (r["run_id"], r["argv"], r["config"], r["environment"], r["outcome"]) == (
            run, ["dnnbench", "run", "x"], {"preset": "quick"}, {"cpu": "test"}, "complete")
        assert r["started_at"] and r["finished_at"]

        (m,) = store.models()
        assert (m["model"], m["input_size"], m["family"], m["params"], m["top1"], m["macs"]) == (
            "a", 224, "resnet", 11_689_512, 69.76, None)
        store.put_model({"name": "a", "input_size": 224, "family": "resnet", "params": 1})  # replaces
        assert [m["params"] for m in store.models()] == [1]


def test_same_key_twice_keeps_the_first(tmp_path):
    with Store(tmp_path / "r.db") as store:
        run = store.start_run([], {}, {})
        assert store.put_cell(run, make_cell(latency_median_s=1.0)) is True
        assert store.put_cell(run, make_cell(latency_median_s=2.0, status="crashed")) is False
        (row,) = store.cells()
        assert row["latency_median_s"] == 1.0 and row["status"] == "ok"
        assert store.put_cell(run, make_cell(batch_size=2)) is True  # another key is another cell
        assert len(store.cells()) == 2


@pytest.mark.parametrize("status", ["fine", "", None, "OK"])
def test_invalid_status_is_refused(tmp_path, status):
    with Store(tmp_path / "r.db") as store:
        run = store.start_run([], {}, {})
        with pytest.raises(ValueError):
            store.put_cell(run, make_cell(status=status))
        assert store.cells() == []


def test_reopening_does_not_migrate_again(tmp_path):
    path = tmp_path / "r.db"
    with Store(path) as store:
        run = store.start_run([], {}, {})
        for b in range(1, 6):
            store.put_cell(run, make_cell(batch_size=b))
    for _ in range(2):
        with Store(path, create=False) as store:
            assert len(store.cells()) == 5 and len(store.runs()) == 1
            assert store.db.execute("SELECT count(*) FROM meta").fetchone()[0] == 1
            assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


# ---------------------------------------------------------------------------------------------
# refusals


def test_refuses_random_bytes(tmp_path):
    path = tmp_path / "noise.db"
    path.write_bytes(bytes(range(256)) * 64)
    refused(path, "not an sqlite file")


def test_refuses_text_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("model,latency\nresnet18,0.01\n")
    refused(path)


def test_refuses_a_short_file(tmp_path):
    path = tmp_path / "short.db"
    path.write_bytes(b"SQLite")
    refused(path)


def test_refuses_another_programs_database(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
        db.execute("INSERT INTO contacts VALUES ('a', '1')")
    db.close()
    message = refused(path, "another program")
    assert "contacts" in message
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == [("contacts",)]
    db.close()


def test_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        db.execute("CREATE TABLE cells (x)")
    db.close()
    refused(path, "newer")


def test_refuses_a_corrupt_database(tmp_path):
    path = tmp_path / "r.db"
    with Store(path) as store:
        run = store.start_run([], {}, {})
        for b in range(1, 301):
            store.put_cell(run, make_cell(batch_size=b, latency_samples=[0.001 * i for i in range(50)]))
    assert not (tmp_path / "r.db-wal").exists()  # closed: everything is in the main file
    data = bytearray(path.read_bytes())
    assert len(data) > 20 * 4096
    data[4096:8192] = bytes(4096)
    path.write_bytes(bytes(data))
    message = refused(path)
    assert "corrupt" in message or "cannot be read" in message


def test_refuses_a_directory(tmp_path):
    path = tmp_path / "results"
    path.mkdir()
    refused(path, "directory")
    assert list(path.iterdir()) == []


def test_missing_file_without_create(tmp_path):
    path = tmp_path / "missing.db"
    with pytest.raises(UserError) as info:
        Store(path, create=False)
    assert str(path) in str(info.value)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# two writers at once


def run_two(path, args_a, args_b):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(2) as pool:
        barrier = manager.Barrier(2)
        a = pool.apply_async(write_cells, (path, *args_a, barrier))
        b = pool.apply_async(write_cells, (path, *args_b, barrier))
        return a.get(timeout=120), b.get(timeout=120)


# The writers below open a file that exists already; two processes creating the same new file at
# once is the test after these.


def test_two_processes_write_distinct_cells(tmp_path):
    path = tmp_path / "shared.db"
    Store(path).close()
    stored = run_two(path, (["m1", "m2"], range(1, 101)), (["m3", "m4"], range(1, 101)))
    assert stored == (200, 200)
    assert count_cells(path) == 400
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM runs WHERE outcome = 'done'").fetchone()[0] == 2
    with Store(path) as store:
        assert len(store.done_keys()) == 400


def test_two_processes_write_the_same_cells(tmp_path):
    path = tmp_path / "shared.db"
    Store(path).close()
    stored = run_two(path, (["m1"], range(1, 101)), (["m1"], range(1, 101)))
    assert sum(stored) == 100  # each key was stored by exactly one of them
    assert count_cells(path) == 100
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_two_processes_create_the_same_new_file(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    errors = []
    with ctx.Manager() as manager, ctx.Pool(2) as pool:
        for trial in range(40):  # about one trial in four loses the race; 40 make it near certain
            path = tmp_path / f"new{trial}.db"
            barrier = manager.Barrier(2)
            jobs = [pool.apply_async(open_new, (path, barrier)) for _ in range(2)]
            errors += [e for e in (j.get(timeout=60) for j in jobs) if e]
    assert errors == []


# -- read-only commands, read-only places, a full disk -----------------------------------------------

from pathlib import Path  # noqa: E402

from dnnbench.store import _FIGURES_V1, _FIGURES_V2, _migrate_0_to_1, _migrate_1_to_2  # noqa: E402


from clitool import cli as dnnbench  # noqa: E402


def schema_2_file(path):
    """A database as dnnbench wrote it at schema 2, with one cell."""
    db = sqlite3.connect(path, isolation_level=None)
    _migrate_0_to_1(db)
    _migrate_1_to_2(db)
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute("PRAGMA user_version = 2")
    db.execute("INSERT INTO runs (started_at) VALUES ('2026-01-01')")
    columns = ["run_id", *_KEY_V1, *(c for c, _ in _FIGURES_V1 + _FIGURES_V2), "measured_at"]
    cell = {**make_cell(latency_median_s=0.01), "run_id": 1, "measured_at": "2026-01-01", "rounds": 1}
    db.execute(f"INSERT INTO cells ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
               [cell.get(c) for c in columns])
    db.close()


@pytest.mark.parametrize("command", [["export"], ["report", "--out", "rep"],
                                     ["recommend", "--max-memory", "1GB", "--max-latency", "1s"],
                                     ["predict", "resnet18"]])
def test_a_read_command_never_turns_an_empty_file_into_a_database(tmp_path, command):
    db = tmp_path / "empty.db"
    db.touch()
    out = dnnbench(*command, "--db", str(db), cwd=tmp_path)
    assert out.returncode == 2 and "is empty" in out.stderr and out.stderr.count("\n") == 1
    assert db.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


def test_reading_an_older_schema_changes_nothing_and_leaves_nothing_beside_it(tmp_path):
    db = tmp_path / "old.db"
    schema_2_file(db)
    before = digest(db)
    with Store(db, create=False) as store:
        (cell,) = store.cells()
        assert cell["latency_median_s"] == 0.01 and cell["contention"] is None and cell["disturbed"] is None
        assert cell["machine"] == "unknown"  # its run recorded no environment
        assert store.round_counts(3)[key_of(make_cell(machine="unknown"))] == 1
    out = dnnbench("export", "--format", "json", "--db", str(db))
    assert out.returncode == 0, out.stderr
    assert digest(db) == before and sorted(p.name for p in tmp_path.iterdir()) == ["old.db"]
    with Store(db) as store:  # a sweep migrates it, keeping the cell
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert store.cells()[0]["latency_median_s"] == 0.01


needs_setpriv = pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/setpriv").exists(),
                                   reason="runs commands as an ordinary user with setpriv, which needs root")


@needs_setpriv
def test_a_database_in_a_read_only_directory_is_readable_and_run_says_it_cannot_write():
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="dnnbench-ro-"))  # outside pytest's own folder, private to root
    db = folder / "r.db"
    with Store(db) as store:
        run = store.start_run([], {}, {})
        store.put_cell(run, make_cell(latency_median_s=0.01, mem_peak_bytes=10**8))
    before = digest(db)
    os.chmod(folder, 0o555)
    os.chmod(db, 0o444)
    try:
        for command in (["export"], ["recommend", "--max-memory", "1GB", "--max-latency", "1s"]):
            out = dnnbench(*command, "--db", str(db), user=65534, cwd="/")
            assert out.returncode == 0, out.stderr
            assert "resnet18" in out.stdout
        out = dnnbench("run", "resnet18", "--db", str(db), "--quick", "--batch-sizes", "1", user=65534, cwd="/")
        assert out.returncode == 2 and "read-only" in out.stderr and "Traceback" not in out.stderr
        assert out.stderr.strip().count("\n") == 0
        assert digest(db) == before and sorted(p.name for p in folder.iterdir()) == ["r.db"]
    finally:
        os.chmod(folder, 0o755)
        shutil.rmtree(folder)


def test_db_in_a_missing_directory_says_so(tmp_path):
    out = dnnbench("run", "resnet18", "--db", str(tmp_path / "no" / "such" / "x.db"), "--quick")
    assert out.returncode == 2 and "does not exist" in out.stderr and "mkdir -p" in out.stderr


def test_a_full_disk_is_one_line_and_keeps_what_was_stored(tmp_path):
    from dnnbench.store import StoreWriteError

    path = tmp_path / "full.db"
    with Store(path) as store:
        run = store.start_run([], {}, {})
        store.put_cell(run, make_cell(batch_size=1, latency_median_s=0.01))
        pages = store.db.execute("PRAGMA page_count").fetchone()[0]
        store.db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own 'database or disk is full'
        big = make_cell(batch_size=2, latency_median_s=0.01, latency_samples=[0.01] * 5000)
        with pytest.raises(StoreWriteError, match="the disk is full") as info:
            store.put_cell(run, big)
        assert "\n" not in str(info.value) and "run the same command again" in str(info.value)
    with Store(path) as store:
        assert [c["batch_size"] for c in store.cells()] == [1]


def test_cells_stored_before_artifact_bytes_still_read(tmp_path, synthetic):
    db = synthetic.make_db(tmp_path / "old.db")
    with sqlite3.connect(db) as con:  # as a release of schema 12 left it
        con.execute("ALTER TABLE cells DROP COLUMN artifact_bytes")
        con.execute("PRAGMA user_version = 12")
    with Store(db, create=False) as store:  # read as it is
        rows = store.cells()
        assert rows and all(r.get("artifact_bytes") is None for r in rows)
    with Store(db) as store:  # migrated
        assert "artifact_bytes" in {r[1] for r in store.db.execute("PRAGMA table_info(cells)")}
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_cells_stored_before_the_restart_figures_still_read(tmp_path, synthetic):
    db = synthetic.make_db(tmp_path / "old.db")
    with sqlite3.connect(db) as con:  # as a release of schema 13 left it
        for column in ("restart_cold_s", "restart_warm_s", "restart_reason"):
            con.execute(f"ALTER TABLE cells DROP COLUMN {column}")
        con.execute("PRAGMA user_version = 13")
    with Store(db, create=False) as store:  # read as it is
        rows = store.cells()
        assert rows and all(r.get("restart_cold_s") is None for r in rows)
    with Store(db) as store:  # migrated, then given a setup's restart figures
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        first = store.cells()[0]
        store.put_restart([first], {"restart_cold_s": 0.5, "restart_warm_s": 0.25})
        got = {(r["model"], r["batch_size"], r["backend"]): r for r in store.cells()}
    mine = got[first["model"], first["batch_size"], first["backend"]]
    assert (mine["restart_cold_s"], mine["restart_warm_s"], mine["restart_reason"]) == (0.5, 0.25, None)
    assert sum(r["restart_cold_s"] is not None for r in got.values()) == 1  # that cell only


def test_kernel_times_stored_before_their_stamp_read_as_unstamped_as_they_are_and_once_migrated(tmp_path):
    path = tmp_path / "k16.db"
    with Store(path) as store:
        store.put_kernels("m1", "cpu", 1, "float32", [{"key": "k", "seconds": 1e-4, "calls": 9, "stamp": "eager=2"}])
    db = sqlite3.connect(path)  # the file as schema 16 wrote it: kernels without a stamp
    db.execute("ALTER TABLE kernels DROP COLUMN stamp")
    db.execute("PRAGMA user_version = 16")
    db.commit()
    db.close()  # its last connection: the change checkpointed into the file itself
    before = digest(path)
    with Store(path, create=False) as store:  # read as it is
        assert store.kernels("m1", "cpu", 1, "float32")["k"] == {"seconds": 1e-4, "calls": 9, "contention": None,
                                                                 "error": None, "stamp": None}
    assert digest(path) == before
    with Store(path) as store:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert store.kernels("m1", "cpu", 1, "float32")["k"]["stamp"] is None
