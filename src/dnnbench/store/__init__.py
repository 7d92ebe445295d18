"""The results database: one SQLite file, one row per measured cell, committed the moment it is taken.

- Identity of a cell: (model, input_size, device, backend, precision, threads, batch_size). A sweep
  skips cells already stored, so a sweep started again measures only what is missing; a unique
  index makes sure no cell is stored twice, even when two sweeps write to one file at once.
- WAL journal and a busy timeout let several sweeps write to one file concurrently.
- The schema is versioned (``PRAGMA user_version``) and migrated forward on open; a file that is not
  a dnnbench database, is corrupt, or comes from a newer dnnbench is refused, never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
import uuid
import zlib
from datetime import datetime, timezone
from pathlib import Path

from ..errors import UserError
from ..measure.accuracy import evaluated_model
from ..measure.tails import tail_figures
from ..setup import CELL_KEY, Setup, cell_key, fingerprint, machine_id

SCHEMA_VERSION = 17
APPLICATION_ID = 0x444E4E42  # "DNNB": marks the file as ours in its header

KEY = CELL_KEY  # (model, input size, the setup's fields, batch size): setup.py
# the key as schema 1 to 3 had it, before the machine and the layout joined it
_KEY_V1 = ("model", "input_size", "device", "backend", "precision", "threads", "batch_size")

# (column, SQL type): the figures of a cell, in export order after the key; as created by schema 1
_FIGURES_V1 = [
    ("status", "TEXT NOT NULL"), ("error", "TEXT"),
    ("latency_median_s", "REAL"), ("latency_p90_s", "REAL"), ("latency_p99_s", "REAL"),
    ("latency_ci_low_s", "REAL"), ("latency_ci_high_s", "REAL"), ("samples", "INTEGER"),
    ("images_per_s", "REAL"), ("time_per_image_s", "REAL"),
    ("cold_build_s", "REAL"), ("cold_load_s", "REAL"), ("cold_first_s", "REAL"),
    ("mem_baseline_bytes", "INTEGER"), ("mem_loaded_bytes", "INTEGER"), ("mem_peak_bytes", "INTEGER"),
    ("mem_load_peak_bytes", "INTEGER"),
    ("mem_cuda_allocated_bytes", "INTEGER"), ("mem_cuda_reserved_bytes", "INTEGER"), ("mem_nvml_bytes", "INTEGER"),
    ("energy_per_image_j", "REAL"), ("power_w", "REAL"), ("idle_power_w", "REAL"),
    ("energy_source", "TEXT"), ("energy_reason", "TEXT"),
    ("stop_reason", "TEXT"), ("target_ci", "REAL"), ("ci_rel", "REAL"),
    ("warmup_n", "INTEGER"), ("warmup_s", "REAL"), ("timed_s", "REAL"), ("window_s", "REAL"), ("cell_wall_s", "REAL"),
    ("latency_samples", "TEXT"),
]
# schema 2: rounds (separate worker processes whose samples are pooled) and each round's median
_FIGURES_V2 = [("rounds", "INTEGER"), ("round_medians", "TEXT")]
# schema 3: what other processes used of the machine during the timed passes (measure/busy.py)
_FIGURES_V3 = [("contention", "REAL"), ("steal", "REAL"), ("disturbed", "INTEGER"), ("busy_attempts", "INTEGER"),
               ("busy_wait_s", "REAL"), ("gpu_other_processes", "INTEGER")]
# schema 4: the backend's preparation (export, compile, quantize: part of the cold start) and how far the
# setup's logits are from eager fp32's on the same inputs and weights
_FIGURES_V4 = [("cold_prepare_s", "REAL"), ("max_rel_error", "REAL"), ("top1_agreement", "REAL")]
# schema 7: which runs took the rounds a cell pools (their runs' ``uid``), so that merging databases
# (`dnnbench merge`) can tell a round it already holds from a new one; null for cells stored before
_FIGURES_V7 = [("round_runs", "TEXT")]
# schema 9: the 95% upper bound of p90 and of p99 (distribution-free, measure/tails.py): no tail figure
# without its bound or, where the bound is null, too few samples for one
_FIGURES_V9 = [("latency_p90_high_s", "REAL"), ("latency_p99_high_s", "REAL")]
# schema 13: the bytes of the files a deployment of the setup ships (.onnx, OpenVINO's .xml + .bin, .pte,
# .tflite, the saved weights for eager and compile); null for cells stored before
_FIGURES_V13 = [("artifact_bytes", "INTEGER")]
# schema 14: the setup started again from its artifact alone in a fresh process (load + first pass),
# once with the runtime's caches empty (cold) and once after (warm), or why not (restart_reason)
_FIGURES_V14 = [("restart_cold_s", "REAL"), ("restart_warm_s", "REAL"), ("restart_reason", "TEXT")]
# schema 15: this machine's usual time for the cell when it was measured (the median of its earlier runs'
# medians, `store.usual`) and how many runs that was; null: no earlier run, or stored before
_FIGURES_V15 = [("usual_s", "REAL"), ("usual_runs", "INTEGER")]
FIGURE_COLUMNS = (_FIGURES_V1 + _FIGURES_V2 + _FIGURES_V3 + _FIGURES_V4 + _FIGURES_V7 + _FIGURES_V9 + _FIGURES_V13
                  + _FIGURES_V14 + _FIGURES_V15)
_JSON_COLUMNS = ("latency_samples", "round_medians", "round_runs")
CELL_COLUMNS = ["run_id", *KEY, *(c for c, _ in FIGURE_COLUMNS), "measured_at"]

# untimed: converted but not runnable on this machine (Core ML off macOS), the conversion's figures kept
STATUSES = ("ok", "oom", "crashed", "killed", "timeout", "error", "untimed")


class StoreWriteError(UserError):
    """The database could not take a write (disk full, read-only): what is stored stays stored."""


def _cells_sql(table: str, key: tuple, figures: list) -> str:
    key_sql = ", ".join(f"{k} {'INTEGER' if k in ('input_size', 'threads', 'batch_size') else 'TEXT'} NOT NULL"
                        for k in key)
    figures_sql = ", ".join(f"{c} {t}" for c, t in figures)
    return f"""CREATE TABLE {table} (
            id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER NOT NULL REFERENCES runs(run_id),
            {key_sql}, {figures_sql}, measured_at TEXT NOT NULL)"""


def _migrate_0_to_1(db: sqlite3.Connection) -> None:
    script = f"""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        CREATE TABLE runs (
            run_id INTEGER PRIMARY KEY AUTOINCREMENT, started_at TEXT NOT NULL, finished_at TEXT,
            outcome TEXT, argv TEXT, config TEXT, environment TEXT);
        CREATE TABLE models (
            model TEXT NOT NULL, input_size INTEGER NOT NULL, family TEXT, source TEXT,
            params INTEGER, macs INTEGER, flops INTEGER, file_size INTEGER,
            top1 REAL, top5 REAL, accuracy_source TEXT, PRIMARY KEY (model, input_size));
        {_cells_sql("cells", _KEY_V1, _FIGURES_V1)};
        CREATE UNIQUE INDEX cells_key ON cells ({", ".join(_KEY_V1)});
        INSERT INTO meta VALUES ('application', 'dnnbench')
    """
    for statement in script.split(";"):  # executescript would commit the migration's transaction
        db.execute(statement)


def _migrate_1_to_2(db: sqlite3.Connection) -> None:
    for column, sql_type in _FIGURES_V2:
        db.execute(f"ALTER TABLE cells ADD COLUMN {column} {sql_type}")


def _migrate_2_to_3(db: sqlite3.Connection) -> None:
    for column, sql_type in _FIGURES_V3:
        db.execute(f"ALTER TABLE cells ADD COLUMN {column} {sql_type}")


def _migrate_3_to_4(db: sqlite3.Connection) -> None:
    """The machine and the layout join the cells' unique key. SQLite cannot change a unique key in place,
    so the table is rebuilt (as sqlite-utils' ``transform`` does): a new table, every row copied, the
    old one dropped, the new one renamed. A cell's machine is the one its run recorded."""
    old = [r[1] for r in db.execute("PRAGMA table_info(cells)")]
    db.execute(_cells_sql("cells_new", KEY, _FIGURES_V1 + _FIGURES_V2 + _FIGURES_V3 + _FIGURES_V4))
    db.execute(f"INSERT INTO cells_new ({', '.join(old)}, machine, layout) SELECT {', '.join(old)}, 'unknown', "
               "'nchw' FROM cells")
    db.execute("CREATE TABLE machines (machine TEXT PRIMARY KEY, fingerprint TEXT NOT NULL)")
    for run_id, environment in db.execute("SELECT run_id, environment FROM runs").fetchall():
        env = json.loads(environment or "null") or {}
        db.execute("UPDATE cells_new SET machine = ? WHERE run_id = ?", (machine_id(env), run_id))
        db.execute("INSERT OR IGNORE INTO machines VALUES (?, ?)", (machine_id(env), json.dumps(fingerprint(env))))
    db.execute("DROP TABLE cells")
    db.execute("ALTER TABLE cells_new RENAME TO cells")
    db.execute(f"CREATE UNIQUE INDEX cells_key ON cells ({', '.join(KEY)})")


# schema 5: accuracy measured on the user's images (`dnnbench eval`): one row per evaluation; the latest
# of a (model, input size, setup, weights, data) is the one read
ACCURACY_COLUMNS = [
    ("model", "TEXT NOT NULL"), ("input_size", "INTEGER NOT NULL"), ("machine", "TEXT NOT NULL"),
    ("device", "TEXT NOT NULL"), ("backend", "TEXT NOT NULL"), ("precision", "TEXT NOT NULL"),
    ("threads", "INTEGER NOT NULL"), ("layout", "TEXT NOT NULL"), ("weights", "TEXT"), ("data", "TEXT NOT NULL"),
    ("images", "INTEGER NOT NULL"), ("top1_hits", "INTEGER NOT NULL"), ("top5_hits", "INTEGER"),
    ("top1", "REAL NOT NULL"), ("top1_low", "REAL"), ("top1_high", "REAL"),
    ("top5", "REAL"), ("top5_low", "REAL"), ("top5_high", "REAL"),
    ("skipped", "INTEGER NOT NULL"), ("skipped_examples", "TEXT"), ("images_per_s", "REAL"),
    ("mapping", "TEXT"), ("preprocess", "TEXT"), ("calibration", "TEXT"), ("heads_resized", "TEXT"),
    ("measured_at", "TEXT NOT NULL"),
]
_ACCURACY_JSON = ("skipped_examples", "preprocess", "heads_resized")


def _migrate_4_to_5(db: sqlite3.Connection) -> None:
    columns = ", ".join(f"{c} {t}" for c, t in ACCURACY_COLUMNS)
    db.execute(f"CREATE TABLE accuracy (id INTEGER PRIMARY KEY, {columns})")


def _migrate_5_to_6(db: sqlite3.Connection) -> None:
    # a model's kernels at one batch size (machine-independent; `versions` names the libraries that built
    # it, so an upgrade profiles again) and what each kernel took on a machine (`dnnbench predict`)
    db.execute("""CREATE TABLE profiles (model TEXT NOT NULL, input_size INTEGER NOT NULL,
                  batch_size INTEGER NOT NULL, versions TEXT NOT NULL, profile BLOB NOT NULL, recorded_at TEXT NOT NULL,
                  UNIQUE (model, input_size, batch_size, versions))""")
    db.execute("""CREATE TABLE kernels (machine TEXT NOT NULL, device TEXT NOT NULL, threads INTEGER NOT NULL,
                  dtype TEXT NOT NULL, kernel TEXT NOT NULL, seconds REAL, calls INTEGER, contention REAL,
                  error TEXT, measured_at TEXT NOT NULL, UNIQUE (machine, device, threads, dtype, kernel))""")


def _migrate_6_to_7(db: sqlite3.Connection) -> None:
    # a run's uid names it in every database it is merged into; an old run's is made of what it recorded,
    # so two copies of one file migrated apart still agree on it
    db.execute("ALTER TABLE runs ADD COLUMN uid TEXT")
    for run_id, started, argv, environment in db.execute(
            "SELECT run_id, started_at, argv, environment FROM runs").fetchall():
        db.execute("UPDATE runs SET uid = ? WHERE run_id = ?", (_old_uid(started, argv, environment), run_id))
    db.execute("CREATE UNIQUE INDEX runs_uid ON runs (uid)")
    for column, sql_type in _FIGURES_V7:
        db.execute(f"ALTER TABLE cells ADD COLUMN {column} {sql_type}")


def _old_uid(started: str, argv: str | None, environment: str | None) -> str:
    return "old-" + hashlib.sha1(json.dumps([started, argv, environment]).encode()).hexdigest()[:20]


# schema 8: the server scenario's points (`dnnbench run --scenario server`): one row per rate served,
# under a batching policy, with the percentile's 95% bounds; a peak at any limit is read from them
_SERVING_V8 = [
    ("run_id", "INTEGER"), ("model", "TEXT NOT NULL"), ("input_size", "INTEGER NOT NULL"),
    ("machine", "TEXT NOT NULL"), ("device", "TEXT NOT NULL"), ("backend", "TEXT NOT NULL"),
    ("precision", "TEXT NOT NULL"), ("threads", "INTEGER NOT NULL"), ("layout", "TEXT NOT NULL"),
    ("max_batch", "INTEGER NOT NULL"), ("max_wait_s", "REAL NOT NULL"), ("instances", "INTEGER NOT NULL"),
    ("status", "TEXT NOT NULL"), ("error", "TEXT"), ("qps", "REAL"), ("achieved_qps", "REAL"),
    ("requests", "INTEGER"), ("served", "INTEGER"), ("wall_s", "REAL"), ("p50_s", "REAL"), ("p90_s", "REAL"),
    ("p99_s", "REAL"), ("q", "REAL"), ("q_low_s", "REAL"), ("q_high_s", "REAL"), ("limit_s", "REAL"),
    ("verdict", "TEXT"), ("overloaded", "INTEGER"), ("load_cpu_s", "REAL"), ("busy_wait_s", "REAL"),
    ("contention", "REAL"), ("disturbed", "INTEGER"), ("mem_peak_bytes", "INTEGER"), ("service_s", "TEXT"),
    ("measured_at", "TEXT NOT NULL"),
]
# schema 9: whether the load generator ran on a core of its own (null: not known, stored before)
_SERVING_V9 = [("load_apart", "INTEGER")]
# schema 12: how much slower the model's passes ran during the point than when its service times were
# measured (the median ratio), so that a peak can say how far the machine's speed moved along its search
_SERVING_V12 = [("slowdown", "REAL")]
SERVING_COLUMNS = _SERVING_V8 + _SERVING_V9 + _SERVING_V12


def _serving_insert(row: dict) -> tuple[str, list]:
    row = {**row, "measured_at": row.get("measured_at") or now()}
    names = [c for c, _ in SERVING_COLUMNS]
    values = [json.dumps(row.get(c)) if c == "service_s" else row.get(c) for c in names]
    return f"INSERT INTO serving ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", values


def _migrate_7_to_8(db: sqlite3.Connection) -> None:
    columns = ", ".join(f"{c} {t}" for c, t in _SERVING_V8)
    db.execute(f"CREATE TABLE IF NOT EXISTS serving (id INTEGER PRIMARY KEY, {columns})")


def _migrate_8_to_9(db: sqlite3.Connection) -> None:
    for column, sql_type in _FIGURES_V9:
        db.execute(f"ALTER TABLE cells ADD COLUMN {column} {sql_type}")
    for column, sql_type in _SERVING_V9:
        db.execute(f"ALTER TABLE serving ADD COLUMN {column} {sql_type}")
    rows = db.execute("SELECT id, latency_samples FROM cells WHERE latency_samples IS NOT NULL").fetchall()
    for cell_id, samples in rows:  # the bounds of the samples each cell holds
        try:
            tails = tail_figures(sorted(float(x) for x in json.loads(samples)))
        except (ValueError, TypeError):  # samples not readable as numbers: no bound rather than a wrong one
            continue
        db.execute("UPDATE cells SET latency_p90_high_s = ?, latency_p99_high_s = ? WHERE id = ?",
                   (tails["latency_p90_high_s"], tails["latency_p99_high_s"], cell_id))


# schema 10: interleaved pairs (`dnnbench run --versus`): one row per round and batch size of a model
# against another model or setup, timed in turns by two workers; `compare` reads them as paired measurements
PAIR_COLUMNS = [
    ("run_id", "INTEGER"), ("round", "INTEGER NOT NULL"), ("model", "TEXT NOT NULL"),
    ("input_size", "INTEGER NOT NULL"), ("machine", "TEXT NOT NULL"), ("device", "TEXT NOT NULL"),
    ("backend", "TEXT NOT NULL"), ("precision", "TEXT NOT NULL"), ("threads", "INTEGER NOT NULL"),
    ("layout", "TEXT NOT NULL"), ("batch_size", "INTEGER NOT NULL"), ("new_model", "TEXT NOT NULL"),
    ("new_input_size", "INTEGER NOT NULL"), ("new_backend", "TEXT NOT NULL"), ("new_precision", "TEXT NOT NULL"),
    ("new_threads", "INTEGER NOT NULL"), ("new_layout", "TEXT NOT NULL"), ("status", "TEXT NOT NULL"),
    ("error", "TEXT"), ("pairs", "INTEGER"), ("ratio", "REAL"), ("ratio_low", "REAL"), ("ratio_high", "REAL"),
    ("base_median_s", "REAL"), ("new_median_s", "REAL"), ("base_blocks", "TEXT"), ("new_blocks", "TEXT"),
    ("base_per_block", "INTEGER"), ("new_per_block", "INTEGER"), ("wall_s", "REAL"), ("stop_reason", "TEXT"),
    ("contention", "REAL"), ("disturbed", "INTEGER"), ("base_max_rel_error", "REAL"),
    ("base_top1_agreement", "REAL"), ("new_max_rel_error", "REAL"), ("new_top1_agreement", "REAL"),
    ("measured_at", "TEXT NOT NULL"),
]
# schema 11: a pair's new side may run in another interpreter (`--versus python=PATH`), and each side
# reports its interpreter's and libraries' versions (JSON: `measure.device.software`)
_PAIRS_V11 = [("new_python", "TEXT"), ("base_software", "TEXT"), ("new_software", "TEXT")]
_PAIRS_V10 = list(PAIR_COLUMNS)
PAIR_COLUMNS = _PAIRS_V10 + _PAIRS_V11
_PAIR_JSON = ("base_blocks", "new_blocks", "base_software", "new_software")


def _pair_insert(row: dict) -> tuple[str, list]:
    row = {**row, "measured_at": row.get("measured_at") or now()}
    names = [c for c, _ in PAIR_COLUMNS]
    values = [json.dumps(row.get(c)) if c in _PAIR_JSON else row.get(c) for c in names]
    return f"INSERT INTO pairs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", values


def _migrate_9_to_10(db: sqlite3.Connection) -> None:
    columns = ", ".join(f"{c} {t}" for c, t in _PAIRS_V10)
    db.execute(f"CREATE TABLE IF NOT EXISTS pairs (id INTEGER PRIMARY KEY, {columns})")


def _add_columns(db: sqlite3.Connection, table: str, columns: list) -> None:
    """``columns`` (name, SQL type) added to ``table``, those it already has left as they are."""
    present = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
    for column, sql_type in columns:
        if column not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")


def _migrate_10_to_11(db: sqlite3.Connection) -> None:
    _add_columns(db, "pairs", _PAIRS_V11)


def _migrate_11_to_12(db: sqlite3.Connection) -> None:
    _add_columns(db, "serving", _SERVING_V12)


def _migrate_12_to_13(db: sqlite3.Connection) -> None:
    _add_columns(db, "cells", _FIGURES_V13)


def _migrate_13_to_14(db: sqlite3.Connection) -> None:
    _add_columns(db, "cells", _FIGURES_V14)


def _migrate_14_to_15(db: sqlite3.Connection) -> None:
    _add_columns(db, "cells", _FIGURES_V15)


def _migrate_15_to_16(db: sqlite3.Connection) -> None:
    # each kernel's seconds inside a real pass of a model on a machine (`predict --method inside`): the
    # calibration models' passes, kept like the kernels' times alone, so that they are taken once
    db.execute("""CREATE TABLE IF NOT EXISTS in_model (machine TEXT NOT NULL, device TEXT NOT NULL,
                  threads INTEGER NOT NULL, dtype TEXT NOT NULL, model TEXT NOT NULL, input_size INTEGER NOT NULL,
                  batch_size INTEGER NOT NULL, versions TEXT NOT NULL, seconds BLOB NOT NULL, contention REAL,
                  disturbed INTEGER, measured_at TEXT NOT NULL,
                  UNIQUE (machine, device, threads, dtype, model, input_size, batch_size, versions))""")


def _migrate_16_to_17(db: sqlite3.Connection) -> None:
    # what each kernel time was taken with (`runtime_kernels.stamp`: the timing's format, the libraries'
    # versions); a time stored before has none, and is taken again by the next `predict` that needs it
    _add_columns(db, "kernels", [("stamp", "TEXT")])


MIGRATIONS = {0: _migrate_0_to_1, 1: _migrate_1_to_2, 2: _migrate_2_to_3, 3: _migrate_3_to_4,
              4: _migrate_4_to_5, 5: _migrate_5_to_6, 6: _migrate_6_to_7,
              7: _migrate_7_to_8, 8: _migrate_8_to_9, 9: _migrate_9_to_10,
              10: _migrate_10_to_11, 11: _migrate_11_to_12, 12: _migrate_12_to_13,
              13: _migrate_13_to_14, 14: _migrate_14_to_15, 15: _migrate_15_to_16, 16: _migrate_16_to_17}  # from version n to n + 1


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# what a sweep writes, by method: a store that forwards its writes (a cluster node's) wraps these; the
# ones named in RUN_WRITES take a run id first, which the receiving database maps to its own
WRITES = ("start_run", "finish_run", "put_cell", "put_restart", "put_model", "register_machine", "delete_failed",
          "settle_drift", "put_usual")
RUN_WRITES = ("finish_run", "put_cell", "settle_drift")


class Store:
    """An open dnnbench database. Every write is its own transaction, committed before returning.

    ``create=False`` opens it read-only, for the commands that only read (export, report,
    recommend, predict): the file is never created, migrated or changed, no -wal/-shm file is left
    beside it, and it can be read from a read-only directory or mount. An older schema is read as it
    is (the columns it lacks read as null)."""

    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        self.readonly = not create
        if self.readonly:
            self.db = _open_readonly(self.path)
        else:
            _check_writable_location(self.path)
            self.db = _open(self.path)
        self._columns = {r[1] for r in self.db.execute("PRAGMA table_info(cells)")}

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- writes ---------------------------------------------------------------------------------

    def _write(self, sql: str, params=()) -> sqlite3.Cursor:
        return self._transaction(lambda db: db.execute(sql, params))

    def start_run(self, argv: list[str], config: dict, environment: dict, uid: str | None = None) -> int:
        """A new run's id in this file; ``uid`` names it everywhere (a fresh one by default; a node of a
        cluster gives its own, so its rounds keep their names in the database they stream into)."""
        cur = self._write("INSERT INTO runs (started_at, argv, config, environment, uid) VALUES (?, ?, ?, ?, ?)",
                          (now(), json.dumps(argv), json.dumps(config), json.dumps(environment),
                           uid or uuid.uuid4().hex))
        return int(cur.lastrowid)

    def run_uid(self, run_id: int) -> str | None:
        found = self.db.execute("SELECT uid FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return found[0] if found else None

    def finish_run(self, run_id: int, outcome: str) -> None:
        self._write("UPDATE runs SET finished_at = ?, outcome = ? WHERE run_id = ?", (now(), outcome, run_id))

    def settle_drift(self, run_id: int):
        """Give the cells whose last round ``run_id`` measured (``ok``, two rounds or more) the interval
        over their rounds from the drift pooled over them (`rounds.with_drift`; over the undisturbed ones
        where there are any), and record that
        drift with the run (its environment's ``drift_between_rounds``). Returns the `latency.Drift`,
        None where no cell has two rounds. One transaction: a reader sees the cells before or after."""
        from ..measure.latency import pooled_drift
        from . import rounds as rounds_

        def write(db: sqlite3.Connection):
            cur = db.execute(f"SELECT {', '.join(CELL_COLUMNS)} FROM cells WHERE run_id = ? AND status = 'ok'",
                             (run_id,))
            cells = [_decode(dict(zip(CELL_COLUMNS, r, strict=True))) for r in cur]
            cells = [c for c in cells if len(c.get("round_medians") or []) >= 2]
            # a cell others disturbed is flagged already, and one 3x slower round would swamp the pool
            quiet = [c["round_medians"] for c in cells if not c.get("disturbed")]
            drift = pooled_drift(quiet or [c["round_medians"] for c in cells])
            if drift is None:
                return None
            where = " AND ".join(f"{k} = ?" for k in KEY)
            for cell in cells:
                values = _encode(rounds_.with_drift(cell, drift))
                db.execute(f"UPDATE cells SET latency_ci_low_s = ?, latency_ci_high_s = ?, ci_rel = ? WHERE {where}",
                           [values.get("latency_ci_low_s"), values.get("latency_ci_high_s"), values.get("ci_rel")]
                           + [cell[k] for k in KEY])
            found = db.execute("SELECT environment FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            environment = json.loads(found[0]) if found and found[0] else {}
            environment["drift_between_rounds"] = drift.to_dict()
            db.execute("UPDATE runs SET environment = ? WHERE run_id = ?", (json.dumps(environment), run_id))
            return drift

        return self._transaction(write)

    def cells_of_run(self, run_id: int) -> list[dict]:
        """The ``ok`` latency cells whose last round ``run_id`` measured, as stored (no samples)."""
        cols = [c for c in CELL_COLUMNS if c != "latency_samples"]
        cur = self.db.execute(f"SELECT {', '.join(cols)} FROM cells WHERE run_id = ? AND status = 'ok' "
                              "AND latency_median_s IS NOT NULL", (run_id,))
        return [_decode(dict(zip(cols, r, strict=True))) for r in cur]

    def put_usual(self, rows: list[dict]) -> None:
        """Give stored cells (``rows``: their key, ``usual_s`` and ``usual_runs``) this machine's usual time
        for them (`store.usual`), in one transaction."""
        where = " AND ".join(f"{k} = ?" for k in KEY)

        def write(db: sqlite3.Connection) -> None:
            for row in rows:
                db.execute(f"UPDATE cells SET usual_s = ?, usual_runs = ? WHERE {where}",
                           [row.get("usual_s"), row.get("usual_runs")] + [row[k] for k in KEY])

        self._transaction(write)

    def put_model(self, figures: dict) -> None:
        cols = ["model", "input_size", "family", "source", "params", "macs", "flops", "file_size",
                "top1", "top5", "accuracy_source"]
        row = {**figures, "model": figures["name"]}
        self._write(f"INSERT OR REPLACE INTO models ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    [row.get(c) for c in cols])

    def put_cell(self, run_id: int, cell: dict, rounds: int = 1) -> bool:
        """Store one cell's figures from one round; False if they were not needed (another sweep
        stored that cell, or it already has ``rounds`` rounds). A cell already stored with fewer
        rounds gets these figures folded in (``run.rounds.merge``), in one transaction."""
        from . import rounds as rounds_

        row = {**cell, **Setup.of(cell).to_dict(), "run_id": run_id, "measured_at": cell.get("measured_at") or now()}
        if not row["machine"]:
            raise ValueError("a cell needs its machine (setup.Setup.machine): cells of two machines must not pool")
        if row.get("status") not in STATUSES:
            raise ValueError(f"cell status must be one of {STATUSES}, got {row.get('status')!r}")
        where = " AND ".join(f"{k} = ?" for k in KEY)

        def write(db: sqlite3.Connection) -> bool:
            row["round_runs"] = [self.run_uid(run_id)]
            cur = db.execute(f"SELECT {', '.join(CELL_COLUMNS)} FROM cells WHERE {where}", [row[k] for k in KEY])
            found = cur.fetchone()
            if found is None:
                values = _encode(rounds_.first(row))
                db.execute(f"INSERT INTO cells ({', '.join(CELL_COLUMNS)}) VALUES ({', '.join('?' * len(CELL_COLUMNS))})",
                           [values.get(c) for c in CELL_COLUMNS])
                return True
            merged = rounds_.merge(_decode(dict(zip(CELL_COLUMNS, found, strict=True))), row, rounds)
            if merged is None:
                return False
            values = _encode(merged)
            columns = [c for c in CELL_COLUMNS if c not in KEY]
            db.execute(f"UPDATE cells SET {', '.join(f'{c} = ?' for c in columns)} WHERE {where}",
                       [values.get(c) for c in columns] + [row[k] for k in KEY])
            return True

        return self._transaction(write)

    def _transaction(self, fn):
        """Run ``fn(db)`` in one write transaction (taken at once: a read-modify-write), retried while
        locked; a full disk is retried for a few seconds (space may come back), then refused."""
        full_tries = 0
        for attempt in range(50):  # busy_timeout covers most contention; this covers the rest
            try:
                with self.db:
                    self.db.execute("BEGIN IMMEDIATE")
                    return fn(self.db)
            except sqlite3.OperationalError as exc:
                text = str(exc)
                if "full" in text and full_tries < 3:
                    full_tries += 1
                    time.sleep(1.0)
                    continue
                if "full" in text:
                    raise StoreWriteError(
                        f"{self.path}: the disk is full, so the cell just measured could not be stored; every "
                        "cell stored before is kept. Free some space and run the same command again: it "
                        "measures only the missing cells") from None
                if "readonly" in text or "read-only" in text:
                    raise StoreWriteError(
                        f"{self.path} cannot be written ({text}); every cell stored before is kept. Make it "
                        "writable, or pass another --db") from None
                if "locked" not in text and "busy" not in text:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise UserError(f"database {self.path} stayed locked by another writer for minutes; try again")

    def delete_failed(self, model: str, input_size: int, setup) -> int:
        """Delete the failed cells of one model in one setup (``--retry-failed``); the number deleted."""
        where = " AND ".join(f"{k} = ?" for k in ("model", "input_size", *Setup.FIELDS))
        return self._write(f"DELETE FROM cells WHERE {where} AND status != 'ok'",
                           (model, input_size, *setup.key())).rowcount

    # -- reads ----------------------------------------------------------------------------------

    def done_keys(self, statuses: tuple[str, ...] = STATUSES) -> set[tuple]:
        marks = ", ".join("?" * len(statuses))
        rows = self.db.execute(f"SELECT {', '.join(KEY)} FROM cells WHERE status IN ({marks})", statuses)
        return {tuple(r) for r in rows}

    def round_counts(self, rounds: int) -> dict[tuple, int]:
        """For every stored cell, the rounds it holds, or ``rounds`` if it needs no more (failed cells,
        cells whose later round failed, and complete ones)."""
        from .rounds import complete

        return {cell_key(row): rounds if complete(row, rounds) else int(row["rounds"] or 1) for row in self.cells()}

    def cells(self, with_samples: bool = False) -> list[dict]:
        cols = [c for c in ["id", *CELL_COLUMNS] if with_samples or c != "latency_samples"]
        present = [c for c in cols if c in self._columns]
        absent = dict.fromkeys(c for c in cols if c not in self._columns)  # an older schema, read as it is
        cur = self.db.execute(f"SELECT {', '.join(present)} FROM cells ORDER BY model, input_size, batch_size")
        rows = [_decode({**absent, **dict(zip(present, r, strict=True))}) for r in cur]
        if "machine" in absent:  # read-only, not migrated: each cell is its run's machine, as a migration would say
            machines = {r["run_id"]: machine_id(r["environment"] or {}) for r in self.runs()}
            for row in rows:
                row.update(machine=machines.get(row["run_id"]), layout="nchw")
        return rows

    def register_machine(self, machine: str, print_: dict) -> None:
        """Record that ``machine`` names the machine of fingerprint ``print_``; a UserError where the name
        already names another machine in this database (its cells must not be pooled with ours)."""
        found = self.db.execute("SELECT fingerprint FROM machines WHERE machine = ?", (machine,)).fetchone()
        if found is None:
            self._write("INSERT OR IGNORE INTO machines VALUES (?, ?)", (machine, json.dumps(print_)))
        elif json.loads(found[0]) != print_:
            theirs = json.loads(found[0])
            raise UserError(f"the machine name {machine!r} already names another machine in {self.path} "
                            f"({theirs.get('cpu')}, {theirs.get('cores')} cores, {theirs.get('memory_gib')} GiB"
                            f"{', ' + theirs['gpu'] if theirs.get('gpu') else ''}): give this one another --machine")

    def put_accuracy(self, row: dict) -> None:
        """Store one evaluation (`ACCURACY_COLUMNS`; ``measured_at`` now if absent)."""
        row = {**row, "measured_at": row.get("measured_at") or now()}
        names = [c for c, _ in ACCURACY_COLUMNS]
        values = [json.dumps(row.get(c)) if c in _ACCURACY_JSON else row.get(c) for c in names]
        self._write(f"INSERT INTO accuracy ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", values)

    def put_restart(self, cells: list[dict], figures: dict) -> None:
        """The restart figures (``restart_cold_s``, ``restart_warm_s``, ``restart_reason``) of a setup,
        given to its stored ``cells`` (rows with their key) in one transaction."""
        names = [c for c, _ in _FIGURES_V14]
        where = " AND ".join(f"{k} = ?" for k in KEY)

        def write(db: sqlite3.Connection) -> None:
            for cell in cells:
                row = {**cell, **Setup.of(cell).to_dict()}
                db.execute(f"UPDATE cells SET {', '.join(f'{c} = ?' for c in names)} WHERE {where}",
                           [figures.get(c) for c in names] + [row[k] for k in KEY])

        self._transaction(write)

    def put_serving(self, row: dict) -> None:
        """Store one point of the server scenario (`SERVING_COLUMNS`; ``measured_at`` now if absent)."""
        self._write(*_serving_insert(row))

    def put_serving_in_transaction(self, row: dict) -> None:
        """`put_serving` inside a transaction the caller holds (`merge`)."""
        self.db.execute(*_serving_insert(row))

    def serving(self) -> list[dict]:
        """Every point of the server scenario stored, oldest first (none before schema 8)."""
        rows = self._all_rows("serving")
        for row in rows:
            row["service_s"] = json.loads(row["service_s"]) if row.get("service_s") else None
            row["overloaded"] = None if row["overloaded"] is None else bool(row["overloaded"])
            row["disturbed"] = None if row["disturbed"] is None else bool(row["disturbed"])
            row["load_apart"] = None if row.get("load_apart") is None else bool(row["load_apart"])
        return rows

    def _all_rows(self, table: str) -> list[dict]:
        """Every row of ``table`` as a dict, oldest first; none where the file predates the table."""
        if not self._has(table):
            return []
        cur = self.db.execute(f"SELECT * FROM {table} ORDER BY id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def put_pair(self, row: dict) -> None:
        """Store one round and batch size of an interleaved pair (`PAIR_COLUMNS`)."""
        self._write(*_pair_insert(row))

    def put_pair_in_transaction(self, row: dict) -> None:
        """`put_pair` inside a transaction the caller holds (`merge`)."""
        self.db.execute(*_pair_insert(row))

    def pairs(self) -> list[dict]:
        """Every interleaved pair's row stored, oldest first (none before schema 10; a file of schema 10
        read as it is lacks the columns of 11, read as None)."""
        rows = self._all_rows("pairs")
        for row in rows:
            for c, _ in _PAIRS_V11:
                row.setdefault(c, None)
            for c in _PAIR_JSON:
                row[c] = json.loads(row[c]) if row.get(c) else None
            row["disturbed"] = None if row["disturbed"] is None else bool(row["disturbed"])
        return rows

    def accuracies(self) -> list[dict]:
        """Every evaluation stored, oldest first (none in a file older than schema 5)."""
        if not self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'accuracy'").fetchone():
            return []
        cur = self.db.execute("SELECT * FROM accuracy ORDER BY id")
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        for row in rows:
            for c in _ACCURACY_JSON:
                row[c] = json.loads(row[c]) if row.get(c) else None
            # older versions stored a resized head's accuracy under the ImageNet model's own name
            row["model"] = evaluated_model(row["model"], row["weights"], row["heads_resized"])
        return rows

    def _has(self, table: str) -> bool:
        return bool(self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone())

    def put_profile(self, model: str, input_size: int, batch_size: int, versions: str, profile: dict) -> None:
        """Store a model's kernels at ``batch_size`` (`measure.kernels.Profile.to_dict`), built with ``versions``."""
        self.put_profiles({(model, input_size, batch_size): profile}, versions)

    def put_profiles(self, profiles: dict[tuple[str, int, int], dict], versions: str) -> None:
        """Store ``profiles`` {(model, input size, batch size): profile dict} of ``versions``, in one transaction."""
        stamp = now()
        values = [(*key, versions, zlib.compress(json.dumps(p, separators=(",", ":")).encode()), stamp)
                  for key, p in profiles.items()]
        self._transaction(lambda db: db.executemany("INSERT OR IGNORE INTO profiles VALUES (?, ?, ?, ?, ?, ?)",
                                                    values))

    def profiles(self, versions: str, batch_size: int | None = None) -> dict[tuple[str, int, int], dict]:
        """{(model, input size, batch size): profile dict} recorded with ``versions`` (none before schema 6)."""
        if not self._has("profiles"):
            return {}
        sql, params = "SELECT model, input_size, batch_size, profile FROM profiles WHERE versions = ?", [versions]
        if batch_size is not None:
            sql, params = sql + " AND batch_size = ?", params + [batch_size]
        return {(m, i, b): json.loads(zlib.decompress(p)) for m, i, b, p in self.db.execute(sql, params)}

    def put_kernels(self, machine: str, device: str, threads: int, dtype: str, rows: list[dict]) -> None:
        """Store kernel times (``key``, ``seconds``, ``calls``, ``contention``, ``error``, ``stamp``: what
        it was taken with), in one transaction."""
        measured = now()
        values = [(machine, device, threads, dtype, r["key"], r.get("seconds"), r.get("calls"), r.get("contention"),
                   r.get("error"), measured, r.get("stamp")) for r in rows]
        self._transaction(lambda db: db.executemany(
            "INSERT OR REPLACE INTO kernels (machine, device, threads, dtype, kernel, seconds, calls, contention, "
            "error, measured_at, stamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values))

    def kernels(self, machine: str, device: str, threads: int, dtype: str) -> dict[str, dict]:
        """{kernel key: {seconds, calls, contention, error, stamp}} timed on this machine, device, threads
        and dtype (stamp None: stored before schema 17)."""
        if not self._has("kernels"):
            return {}
        stamped = "stamp" in {r[1] for r in self.db.execute("PRAGMA table_info(kernels)")}
        cur = self.db.execute(f"SELECT kernel, seconds, calls, contention, error, {'stamp' if stamped else 'NULL'} "
                              "FROM kernels WHERE machine = ? AND device = ? AND threads = ? AND dtype = ?",
                              (machine, device, threads, dtype))
        return {k: {"seconds": s, "calls": c, "contention": x, "error": e, "stamp": t} for k, s, c, x, e, t in cur}

    def put_in_model(self, machine: str, device: str, threads: int, dtype: str, versions: str,
                     key: tuple[str, int, int], row: dict) -> None:
        """Store one model's kernel times inside its passes (``key``: model, input size, batch size; ``row``:
        ``seconds`` {kernel key: seconds of one call}, ``contention``, ``disturbed``), replacing an older one."""
        blob = zlib.compress(json.dumps(row["seconds"], separators=(",", ":")).encode())
        self._write("INSERT OR REPLACE INTO in_model VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (machine, device, threads, dtype, *key, versions, blob, row.get("contention"),
                     int(bool(row.get("disturbed"))), now()))

    def in_model(self, machine: str, device: str, threads: int, dtype: str, versions: str) -> dict:
        """{(model, input size, batch size): {seconds, contention, disturbed}} stored for this machine,
        device, threads, dtype and library versions (none before schema 16)."""
        if not self._has("in_model"):
            return {}
        cur = self.db.execute("SELECT model, input_size, batch_size, seconds, contention, disturbed FROM in_model "
                              "WHERE machine = ? AND device = ? AND threads = ? AND dtype = ? AND versions = ?",
                              (machine, device, threads, dtype, versions))
        return {(m, i, b): {"seconds": json.loads(zlib.decompress(s)), "contention": c, "disturbed": bool(d)}
                for m, i, b, s, c, d in cur}

    def machines(self) -> dict[str, dict]:
        """Every machine of this database: its name or id, and its fingerprint."""
        if "machines" not in {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}:
            return {machine_id(r["environment"] or {}): fingerprint(r["environment"] or {}) for r in self.runs()}
        return {m: json.loads(f) for m, f in self.db.execute("SELECT machine, fingerprint FROM machines")}

    def runs(self) -> list[dict]:
        """Every run, oldest first, with its ``uid`` (in a file older than schema 7 read as it is, the one
        its migration would give)."""
        has_uid = "uid" in {r[1] for r in self.db.execute("PRAGMA table_info(runs)")}
        cur = self.db.execute("SELECT run_id, started_at, finished_at, outcome, argv, config, environment, "
                              f"{'uid' if has_uid else 'NULL'} FROM runs ORDER BY run_id")
        out = []
        for r in cur:
            out.append({"run_id": r[0], "started_at": r[1], "finished_at": r[2], "outcome": r[3],
                        "argv": json.loads(r[4] or "null"), "config": json.loads(r[5] or "null"),
                        "environment": json.loads(r[6] or "null"), "uid": r[7] or _old_uid(r[1], r[4], r[6])})
        return out

    def models(self) -> list[dict]:
        cur = self.db.execute("SELECT * FROM models ORDER BY model")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur]


def insert_cells(db: sqlite3.Connection, rows: list[dict]) -> None:
    """Store whole cell rows as they are (replacing a stored version of each), inside the caller's
    transaction: a merge's chosen versions, or a node's copy of what the driver holds."""
    sql = f"INSERT OR REPLACE INTO cells ({', '.join(CELL_COLUMNS)}) VALUES ({', '.join('?' * len(CELL_COLUMNS))})"
    db.executemany(sql, [[_encode(row).get(c) for c in CELL_COLUMNS] for row in rows])


def _encode(row: dict) -> dict:
    return {k: json.dumps(v) if k in _JSON_COLUMNS and isinstance(v, list) else v for k, v in row.items()}


def _decode(row: dict) -> dict:
    return {k: json.loads(v) if k in _JSON_COLUMNS and isinstance(v, str) else v for k, v in row.items()}


def _check_writable_location(path: Path) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.exists():
        raise UserError(f"cannot create database {path}: the directory {folder} does not exist; create it "
                        f"(mkdir -p {folder}) or pass another --db")
    if not folder.is_dir():
        raise UserError(f"cannot create database {path}: {folder} is not a directory; pass another --db")


def _check_header(path: Path, fix: str) -> None:
    if path.exists() and path.is_dir():
        raise UserError(f"{path} is a directory, not a database file: {fix}")
    if path.exists() and path.stat().st_size > 0:
        try:
            with open(path, "rb") as f:
                header = f.read(16)
        except OSError as exc:
            raise UserError(f"{path} cannot be read ({exc.strerror}): {fix}") from None
        if header != b"SQLite format 3\x00":
            raise UserError(f"{path} is not a dnnbench database (not an SQLite file); it was left untouched: {fix}")


def _open_readonly(path: Path) -> sqlite3.Connection:
    """Open ``path`` for reading only: never created, migrated or written, nothing left beside it."""
    from urllib.parse import quote

    if not path.exists():
        raise UserError(f"no database at {path}: run `dnnbench run ... --db {path}` first")
    fix = "pass another --db path"
    _check_header(path, fix)
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty: no dnnbench database yet; run `dnnbench run ... --db {path}` first "
                        "(it was left untouched)")
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    wal = Path(f"{path}-wal")
    # no -wal file: nothing is pending, and `immutable` reads the file as it is, with no -shm made
    # beside it (a read-only directory or mount cannot hold one); with one, a sweep may be writing
    candidates = [uri] if wal.exists() else [uri + "&immutable=1"]
    if wal.exists():
        candidates.append(uri + "&immutable=1")
    last = None
    for candidate in candidates:
        db = None
        try:
            db = sqlite3.connect(candidate, uri=True, timeout=60, isolation_level=None)
            db.execute("PRAGMA busy_timeout = 60000")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            app = db.execute("PRAGMA application_id").fetchone()[0]
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            break
        except sqlite3.DatabaseError as exc:
            last = exc
            if db is not None:
                db.close()
    else:
        raise UserError(f"{path} cannot be read as a database ({last}); it was left untouched: {fix}")
    _refuse(db, path, version, app, tables, check, fix)
    if not tables:
        db.close()
        raise UserError(f"{path} holds no dnnbench tables yet: run `dnnbench run ... --db {path}` first")
    return db


def _refuse(db, path: Path, version: int, app: int, tables: set, check: str, fix: str) -> None:
    """Close ``db`` and raise if it is not a dnnbench database this version can read."""
    problem = None
    if tables and app != APPLICATION_ID:
        problem = (f"{path} is an SQLite database of another program (tables: {', '.join(sorted(tables))}); "
                   f"it was left untouched: {fix}")
    elif version > SCHEMA_VERSION:
        problem = (f"{path} was written by a newer dnnbench (schema {version}, this one reads up to "
                   f"{SCHEMA_VERSION}): upgrade dnnbench")
    elif check != "ok":
        problem = (f"{path} is corrupt (SQLite integrity check: {check}); it was left untouched: "
                   f"restore it from a copy or {fix}")
    if problem:
        db.close()
        raise UserError(problem)


def _open(path: Path) -> sqlite3.Connection:
    fix = f"pass another --db path, or move {path} aside"
    _check_header(path, fix)
    reader = "the commands that only read it (export, report, recommend, predict) still work"
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{path} is read-only, so a sweep cannot store cells in it: make it writable or pass "
                        f"another --db; {reader}")
    folder = path.parent if str(path.parent) else Path(".")
    if not os.access(folder, os.W_OK):
        raise UserError(f"the directory {folder} is read-only, and SQLite must write a journal beside {path.name}: "
                        f"make it writable or pass another --db; {reader}")
    db = None
    try:
        db = sqlite3.connect(path, timeout=60, isolation_level=None)
        db.execute("PRAGMA busy_timeout = 60000")
        # one read transaction: a consistent view even while another process creates the schema
        db.execute("BEGIN")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        app = db.execute("PRAGMA application_id").fetchone()[0]
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        db.execute("COMMIT")
        db.isolation_level = ""  # from here on, `with db:` transactions
    except sqlite3.DatabaseError as exc:
        if db is not None:
            db.close()
        raise UserError(f"{path} cannot be read as a database ({exc}); it was left untouched: {fix}") from None
    try:
        check = db.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        check = str(exc)
    _refuse(db, path, version, app, tables, check, fix)
    for attempt in range(200):
        try:
            # switching the journal mode skips the busy handler, so contention is retried here
            db.execute("PRAGMA journal_mode = WAL")
            _migrate(db, version)
            with db:  # can it take a write? a read-only file must fail here, not after minutes of setup
                db.execute("BEGIN IMMEDIATE")
            return db
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or attempt == 199:
                db.close()
                hint = "make it writable, or read it with export, report or recommend" if "readonly" in str(exc) \
                    else fix
                raise UserError(f"{path} cannot be written ({exc}): {hint}") from None
            time.sleep(0.01 + 0.005 * attempt)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise UserError(f"{path} cannot be written ({exc}): {fix}") from None
    raise AssertionError("unreachable")


def _migrate(db: sqlite3.Connection, version: int) -> None:
    while version < SCHEMA_VERSION:
        with db:
            db.execute("BEGIN IMMEDIATE")
            current = db.execute("PRAGMA user_version").fetchone()[0]  # another process may have migrated
            if current == version:
                MIGRATIONS[version](db)
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                db.execute(f"PRAGMA user_version = {version + 1}")
        version = db.execute("PRAGMA user_version").fetchone()[0]
