"""What the user may get wrong on the command line: numbers without units, nonsense options, output
paths that would destroy a database or cannot be written. Each is one line and exit status 2, or for
a legal but unwise option one warning line; nothing is half written."""

from __future__ import annotations

import errno
import os
import shutil

import pytest

from dnnbench.errors import UserError
from dnnbench.export import write_output

SQLITE_HEADER = b"SQLite format 3\x00"


from clitool import cli  # noqa: E402


def one_error_line(out) -> str:
    """The single error line of a refused command (and checks that it is one)."""
    assert out.returncode == 2, out.stderr
    assert out.stdout == "" and "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dnnbench: error: "), out.stderr
    return lines[0]


@pytest.fixture(scope="module")
def db(tmp_path_factory, synthetic):
    return synthetic.make_db(tmp_path_factory.mktemp("bad") / "a.db")


@pytest.fixture
def foreign_db(tmp_path):
    """A file that is not a dnnbench database: `run` stops at it, after parsing and checking its options."""
    path = tmp_path / "notes.db"
    path.write_text("my notes\n")
    return path


# -- numbers without a unit ------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["recommend", "--max-memory", "1000", "--max-latency", "50ms"],
     "--max-memory: memory size '1000' has no unit: write it like 1000MB or 1000MiB"),
    (["recommend", "--max-memory", "2GB", "--max-latency", "50"],
     "--max-latency: duration '50' has no unit: write it like 50ms or 50s; units are us, ms, s, min"),
    (["report", "--max-latency", "50"], "--max-latency: duration '50' has no unit"),
])
def test_a_number_without_unit_is_refused(db, args, message):
    assert message in one_error_line(cli(*args, "--db", db))


def test_run_refuses_a_memory_limit_without_unit(tmp_path):
    line = one_error_line(cli("run", "resnet18", "--max-memory", "4096", "--db", tmp_path / "r.db"))
    assert "--max-memory: memory size '4096' has no unit" in line
    assert "KiB, MiB, GiB, TiB" in line
    assert not (tmp_path / "r.db").exists()


# -- run's options ---------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--target-ci", "1e-300"], "argument --target-ci: '1e-300' is below 0.001 (±0.1%)"),
    (["--target-ci", "0.0009"], "give 0.001 or more"),
    (["--timeout", "inf"], "argument --timeout: expected a finite positive number, got 'inf'"),
    (["--max-seconds-per-cell", "inf"], "argument --max-seconds-per-cell: expected a finite positive number"),
    (["--max-seconds-per-cell", "nan"], "argument --max-seconds-per-cell: expected a finite positive number"),
    (["--timeout=-inf"], "argument --timeout: expected a finite positive number"),
])
def test_run_refuses_nonsense_numbers(tmp_path, args, message):
    assert message in one_error_line(cli("run", "resnet18", *args, "--db", tmp_path / "r.db"))


def test_recommend_refuses_an_infinite_speed_floor(db):
    line = one_error_line(cli("recommend", "--db", db, "--max-memory", "2GB", "--min-fps", "inf"))
    assert "argument --min-fps: expected a finite positive number, got 'inf'" in line


def test_more_threads_than_cores_is_a_warning(foreign_db):
    from dnnbench.measure.device import default_threads

    threads = default_threads() + 1
    out = cli("run", "resnet18", "--threads", str(threads), "--db", foreign_db)
    warning, error = out.stderr.splitlines()
    assert warning == (f"dnnbench run: warning: {threads} threads is more than the {default_threads()} cores this "
                       "process may use; threads above that oversubscribe them, so every pass waits for cores and "
                       "measures slower")
    assert error.startswith("dnnbench: error: ") and "not a dnnbench database" in error


@pytest.mark.parametrize("args, message", [
    (["run", "resnet18", "--threads", "10000"], r"10000 threads on \d+ cores: give at most \d+ \(--threads N"),
    (["eval", "resnet18", "--data", ".", "--threads", "10000"], r"10000 threads on \d+ cores: give at most"),
    (["eval", "resnet18", "--data", ".", "--workers", "10000"], r"10000 data-loading workers on \d+ cores: give at "
                                                                r"most \d+ \(--workers N"),
    (["run", "resnet18", "--batch-sizes", "99999999999999999999"], "batch size 99999999999999999999 is above 65536"),
    (["eval", "resnet18", "--data", ".", "--batch-size", "99999999999999999999"], "batch size 9+ is above 65536"),
])
def test_what_the_machine_cannot_do_is_refused_before_anything_starts(tmp_path, args, message):
    import re

    assert re.search(message, one_error_line(cli(*args, "--db", tmp_path / "r.db")))
    assert not (tmp_path / "r.db").exists()


def test_the_api_refuses_a_batch_size_beyond_any_machine(tmp_path):
    import dnnbench

    with pytest.raises(UserError, match="batch size 100000000000000000000 is above 65536"):
        dnnbench.run("resnet18", batch_sizes=[10**20], db=tmp_path / "r.db")


def test_threads_within_the_cores_are_not_warned_about(foreign_db):
    out = cli("run", "resnet18", "--threads", "1", "--db", foreign_db)
    assert "not a dnnbench database" in one_error_line(out)


def test_many_rounds_with_quick_are_accepted(foreign_db):
    out = cli("run", "resnet18", "--rounds", "100", "--quick", "--db", foreign_db)
    assert "not a dnnbench database" in one_error_line(out)  # got past the options


# -- output over a database ------------------------------------------------------------------------


def test_export_never_writes_over_its_own_database(db, tmp_path):
    copy = shutil.copy(db, tmp_path / "own.db")
    before = open(copy, "rb").read()
    line = one_error_line(cli("export", "--db", copy, "--out", copy))
    assert f"--out {copy} is the database being read (--db {copy}); writing there would destroy it" in line
    assert open(copy, "rb").read() == before


def test_export_never_writes_over_another_sqlite_file(db, tmp_path):
    other = tmp_path / "other.sqlite"
    other.write_bytes(SQLITE_HEADER + b"\0" * 4080)
    line = one_error_line(cli("export", "--db", db, "--out", other))
    assert f"--out {other} is an SQLite database; writing there would destroy it" in line and "--force" in line
    assert other.read_bytes().startswith(SQLITE_HEADER)


def test_export_force_overwrites_an_sqlite_file(db, tmp_path):
    other = tmp_path / "other.sqlite"
    other.write_bytes(SQLITE_HEADER + b"\0" * 4080)
    out = cli("export", "--db", db, "--out", other, "--force")
    assert out.returncode == 0 and out.stderr == ""
    assert other.read_text().startswith("model,device,backend")


def test_report_never_writes_over_a_database_in_its_folder(db, tmp_path):
    folder = tmp_path / "rep"
    folder.mkdir()
    shutil.copy(db, folder / "models.csv")  # a name the report writes
    line = one_error_line(cli("report", "--db", db, "--out", folder))
    assert f"{folder / 'models.csv'} is an SQLite database and the report may write a file of that name" in line
    assert (folder / "models.csv").read_bytes().startswith(SQLITE_HEADER)


# -- output paths that cannot be written -----------------------------------------------------------


def test_export_into_a_missing_folder(db, tmp_path):
    line = one_error_line(cli("export", "--db", db, "--out", tmp_path / "nowhere" / "cells.csv"))
    assert line == (f"dnnbench: error: cannot write {tmp_path / 'nowhere' / 'cells.csv'}: folder "
                    f"{tmp_path / 'nowhere'} does not exist; create it or choose another --out")


def test_export_onto_a_folder(db, tmp_path):
    line = one_error_line(cli("export", "--db", db, "--out", tmp_path))
    assert line == f"dnnbench: error: --out {tmp_path} is a folder: give a file name, e.g. {tmp_path / 'cells.csv'}"


def test_export_under_a_file(db, tmp_path):
    (tmp_path / "plain").write_text("x")
    line = one_error_line(cli("export", "--db", db, "--out", tmp_path / "plain" / "cells.csv"))
    assert f"{tmp_path / 'plain'} is a file, not a folder; choose another --out" in line


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_export_onto_a_full_device(db):
    line = one_error_line(cli("export", "--db", db, "--out", "/dev/full"))
    assert line == "dnnbench: error: cannot write /dev/full: No space left on device; choose another --out"


def test_export_replaces_a_file_whole_and_keeps_its_permissions(db, tmp_path):
    target = tmp_path / "cells.csv"
    target.write_text("old\n")
    target.chmod(0o640)
    assert cli("export", "--db", db, "--out", target).returncode == 0
    assert target.read_text().startswith("model,device,backend") and target.stat().st_mode & 0o777 == 0o640
    assert os.listdir(tmp_path) == ["cells.csv"]  # no temporary file left


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["export"], ["export", "--format", "json"], ["models"], ["models", "--json"],
                                  ["inspect", "squeezenet1_1", "--json"]])
def test_output_onto_a_full_device_is_one_line(db, args, monkeypatch, capsys):
    from dnnbench.cli import main

    with open("/dev/full", "w") as full:
        monkeypatch.setattr("sys.stdout", full)
        status = main([*args, *(["--db", str(db)] if args[0] == "export" else [])])
    assert status == 2
    assert capsys.readouterr().err == ("dnnbench: error: cannot write the output: No space left on device; free some "
                                       "space or write it elsewhere (--out FILE where the command has it)\n")


def test_a_failed_write_leaves_the_old_file_and_no_half_file(tmp_path, monkeypatch):
    target = tmp_path / "cells.csv"
    target.write_text("old\n")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UserError, match="No space left on device"):
        write_output(target, "new\n" * 1000)
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["cells.csv"]


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_report_that_meets_a_full_disk_leaves_the_previous_one_whole(db, tmp_path, monkeypatch):
    import dnnbench
    from matplotlib.figure import Figure

    out = tmp_path / "rep"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    dnnbench.open(db).report(out)
    (out / "ops_vs_power.svg").write_text("<svg/>")  # as an older report that could draw it left it
    before = _files(out)
    saved = Figure.savefig
    calls = []

    def fills_the_disk(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 16:  # some figures written, not all
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return saved(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", fills_the_disk)
    with pytest.raises(UserError, match=f"cannot write the report into {out}: No space left on device"):
        dnnbench.open(db).report(out, batch_size=1)  # figures that differ from those there
    assert _files(out) == before  # nothing new beside the old page, and no partial folder
    monkeypatch.undo()
    dnnbench.open(db).report(out)
    after = _files(out)
    assert "ops_vs_power.svg" not in after and after["notes.txt"] == b"mine"  # the stale figure went, not mine
    assert set(after) == set(before) - {"ops_vs_power.svg"}


def test_report_onto_a_file(db, tmp_path):
    (tmp_path / "taken").write_text("x")
    line = one_error_line(cli("report", "--db", db, "--out", tmp_path / "taken"))
    assert f"--out {tmp_path / 'taken'} is a file; the report is a folder of files: give a folder path" in line


def test_report_under_a_file(db, tmp_path):
    (tmp_path / "taken").write_text("x")
    line = one_error_line(cli("report", "--db", db, "--out", tmp_path / "taken" / "rep"))
    assert line == (f"dnnbench: error: cannot create the report folder {tmp_path / 'taken' / 'rep'}: "
                    f"{tmp_path / 'taken'} is a file, not a folder; choose another --out")


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs sysfs")
def test_report_into_a_folder_nobody_may_write(db):
    # sysfs refuses new entries even to root, which a chmod-ed folder would not
    line = one_error_line(cli("report", "--db", db, "--out", "/sys/kernel/dnnbench-report"))
    assert line.startswith("dnnbench: error: cannot write the report into /sys/kernel/dnnbench-report: ")
    assert line.endswith("; choose another --out")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_report_into_a_read_only_folder(db, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    line = one_error_line(cli("report", "--db", db, "--out", folder / "rep"))
    assert line == (f"dnnbench: error: cannot write the report into {folder / 'rep'}: Permission denied; "
                    "choose another --out")


# -- the Python API: a wrongly typed argument is a UserError naming it, before anything runs -------------


@pytest.mark.parametrize("call, message", [
    (lambda d, t: d.recommend(max_memory=None, max_latency="1s"), "max_memory is required"),
    (lambda d, t: d.report(123), "out must be a file or folder path"),
    (lambda d, t: d.report(t / "r", force="yes"), "force must be True or False"),
    (lambda d, t: d.export("csv", out=123), "out must be a file or folder path"),
    (lambda d, t: d.predict(5), "models must be a name or a list of names, got 5"),
    (lambda d, t: d.predict(["resnet18", 5]), "models must be names \\(text\\), got 5"),
    (lambda d, t: __import__("dnnbench").run([None], db=t / "r.db"), "models must be names \\(text\\), got None"),
    (lambda d, t: __import__("dnnbench").open(None), "path must be a file or folder path"),
    (lambda d, t: __import__("dnnbench").open(123), "path must be a file or folder path"),
    (lambda d, t: __import__("dnnbench").run("resnet18", db=123), "db must be a file or folder path"),
    (lambda d, t: __import__("dnnbench").merge([d.path], into=None), "into must be a file or folder path"),
    (lambda d, t: __import__("dnnbench").merge(5, into=t / "m.db"), "sources must be a database path or a list"),
    (lambda d, t: __import__("dnnbench").Setup(precision="int4"), "unknown precision 'int4': use one of fp32"),
    (lambda d, t: __import__("dnnbench").Setup(device=3), "unknown device 3: use cpu, cuda or cuda:N"),
    (lambda d, t: __import__("dnnbench").run("resnet18", precision=["fp32", None], db=t / "r.db"),
     "precision must be names \\(text\\), got None"),
    (lambda d, t: __import__("dnnbench").run("resnet18", quick="yes", db=t / "r.db"), "quick must be True or False"),
    (lambda d, t: __import__("dnnbench").run("resnet18", timeout="10", db=t / "r.db"), "timeout: duration '10' has no "
                                                                                       "unit"),
    (lambda d, t: __import__("dnnbench").evaluate("resnet18", 123), "data must be a file or folder path"),
])
def test_a_wrongly_typed_argument_is_a_user_error(db, tmp_path, call, message):
    import dnnbench

    with pytest.raises(UserError, match=message):
        call(dnnbench.open(db), tmp_path)
    assert not (tmp_path / "r.db").exists() and not (tmp_path / "m.db").exists()


# -- names from databases others measured ------------------------------------------------------------


def _rename_machine(db, tmp_path, name):
    """A copy of ``db`` whose second machine is called ``name`` (as a database measured elsewhere may be)."""
    import sqlite3

    copy = tmp_path / "named.db"
    shutil.copy(db, copy)
    with sqlite3.connect(copy) as con:
        con.execute("UPDATE cells SET machine = ? WHERE machine = 'edge'", (name,))
    return copy


def test_a_name_that_starts_as_a_formula_stays_text_in_every_csv(tmp_path, synthetic):
    import csv

    import dnnbench

    evil = "=HYPERLINK(\"http://x\",\"y\")"
    db = _rename_machine(synthetic.make_db(tmp_path / "a.db", edge=True), tmp_path, evil)
    exported = list(csv.DictReader(dnnbench.open(db).export("csv").splitlines()))
    assert {r["machine"] for r in exported} == {"m1", "'" + evil}
    dnnbench.open(db).report(tmp_path / "rep")
    for table in ("cells.csv", "machines.csv"):
        text = (tmp_path / "rep" / table).read_text()
        assert "'" + evil.replace('"', '""') in text and ",=HYPERLINK" not in text and "\n=" not in text, table


def test_a_machine_name_is_bounded_where_given_and_where_shown(tmp_path, synthetic):
    import dnnbench

    line = one_error_line(cli("run", "resnet18", "--machine", "m" * 10000, "--db", tmp_path / "r.db"))
    assert "is not a name a figure or a heading can show: give at most 64 printable characters" in line
    db = _rename_machine(synthetic.make_db(tmp_path / "a.db", edge=True), tmp_path, "n" * 10000)
    answer = str(dnnbench.open(db).recommend(max_memory="4GB", max_latency="10s"))
    assert "n" * 41 not in answer and "== on nnnn" in answer
    dnnbench.open(db).report(tmp_path / "rep")
    for figure in ("machines.svg", "machine_ratio.svg"):
        legend = (tmp_path / "rep" / figure).read_text()
        assert "n" * 41 not in legend and "nnnn…nnnn" in legend, figure
