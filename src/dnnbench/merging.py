"""`dnnbench merge`: databases measured apart (an edge board, an air-gapped host) made into one.

Every source is read, never written; the target takes each source in one transaction, so an
interrupt or a full disk leaves it as it was before that source. A cell is kept apart by its setup
(the machine is part of it), and two versions of one cell are told apart by the runs whose rounds
they hold (``round_runs``, schema 7: a run named once per round, so the rounds are compared as
multisets and a copy taken between one run's rounds is an earlier version of the same cell):

- the target lacks the cell: it is added;
- the source's rounds are all in the target's: nothing to do (so merging twice adds nothing);
- the target's rounds are all in the source's, and it has more: the source's version replaces it;
- no round in common, both measured: the rounds are pooled, as a later round is by the sweep;
- anything else is a **conflict** (the two share some rounds but each has one the other lacks, one
  failed where the other measured, or either was stored before rounds were named): the version kept
  is the measured one over a failed one, then the one with more rounds, then the later; it is counted
  and named.

Runs are matched by their ``uid``; static figures, profiles and kernel times the target already has
are kept; an evaluation is added unless the target holds the same one.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError
from .store import rounds as rounds_
from .setup import Setup, cell_key
from .store import _ACCURACY_JSON, ACCURACY_COLUMNS, PAIR_COLUMNS, SERVING_COLUMNS, Store, insert_cells

ACTIONS = ("added", "same", "updated", "pooled", "conflict")


@dataclass
class Merged:
    """What one merge did: cells per action (``added``, ``same``, ``updated``, ``pooled``, ``conflict``),
    runs, models and evaluations added, and each conflict in words."""

    into: str
    sources: list[str]
    cells: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ACTIONS, 0))
    runs: int = 0
    models: int = 0
    evaluations: int = 0
    points: int = 0
    pairs: int = 0
    conflicts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"into": self.into, "sources": self.sources, "cells": self.cells, "runs": self.runs,
                "models": self.models, "evaluations": self.evaluations, "points": self.points,
                "pairs": self.pairs, "conflicts": self.conflicts}

    def __str__(self) -> str:
        c = self.cells
        text = (f"merged {len(self.sources)} database(s) into {self.into}: {c['added']} cell(s) added, "
                f"{c['pooled']} pooled with rounds of the same cell, {c['updated']} replaced by a later version, "
                f"{c['same']} already there, {c['conflict']} conflict(s); {self.runs} run(s), {self.models} "
                f"model(s), {self.evaluations} evaluation(s), {self.points} point(s) under load and {self.pairs} interleaved pair row(s) added")
        if self.conflicts:
            shown = self.conflicts[:10]
            text += "\nconflicts (the version kept: measured over failed, then more rounds, then later):\n  " + \
                "\n  ".join(shown) + (f"\n  ... and {len(self.conflicts) - 10} more" if len(self.conflicts) > 10 else "")
        return text


def decide(target: dict | None, source: dict) -> tuple[str, dict | None]:
    """What merging ``source`` into ``target`` (two versions of one cell, or None) does: the action and
    the row to store (None: leave the target's)."""
    if target is None:
        return "added", source
    mine, theirs = rounds_.round_runs(target), rounds_.round_runs(source)
    if mine is not None and theirs is not None:
        # as multisets: one run's two rounds are two entries, so a copy taken between them is a subset
        mine, theirs = Counter(mine), Counter(theirs)
        if theirs <= mine:
            return "same", None
        if mine <= theirs:
            return "updated", source
        if not mine & theirs and target["status"] == source["status"] == "ok":
            return "pooled", rounds_.pool(target, source)
    elif _same(target, source):
        return "same", None
    return "conflict", (source if _rank(source) > _rank(target) else None)


def _same(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in ("status", "measured_at", "latency_median_s", "rounds", "error"))


def _rank(cell: dict) -> tuple:
    """The conflict rule's order: measured over failed, then more rounds, then later."""
    return (cell["status"] == "ok", rounds_.rounds_of(cell) if cell["status"] == "ok" else 0,
            cell.get("measured_at") or "")


def merge(sources, into) -> Merged:
    """Merge the databases ``sources`` into ``into`` (created if absent); see the module's rules."""
    into = Path(into)
    paths = [Path(s) for s in sources]
    if not paths:
        raise UserError("merge needs at least one database to merge: dnnbench merge A.db B.db --into all.db")
    for path in paths:
        if not path.exists():
            raise UserError(f"{path} does not exist: name the databases to merge, then --into the file to write")
        if into.exists() and os.path.samefile(path, into):
            raise UserError(f"{path} is both a source and --into: a merge never writes what it reads; "
                            "--into another file (it can then replace the source)")
    readers = [Store(p, create=False) for p in paths]
    try:
        _check_machines(readers, into)
        report = Merged(str(into), [str(p) for p in paths])
        with Store(into) as target:
            for reader in readers:
                target._transaction(lambda db, reader=reader: _absorb(db, target, reader, report))
        return report
    finally:
        for reader in readers:
            reader.close()


def _check_machines(readers: list[Store], into: Path) -> None:
    """One name, one machine: refused before anything is written where two files name different ones alike."""
    seen: dict[str, tuple[dict, str]] = {}
    if into.exists():
        with Store(into, create=False) as target:
            seen = {m: (f, str(into)) for m, f in target.machines().items()}
    for reader in readers:
        for machine, print_ in reader.machines().items():
            if machine in seen and seen[machine][0] != print_:
                raise UserError(f"{reader.path} and {seen[machine][1]} each name a different machine {machine!r} "
                                "(their fingerprints differ): their cells must not pool, so nothing was merged; "
                                "measure one of them again under another --machine")
            seen.setdefault(machine, (print_, str(reader.path)))


def _absorb(db: sqlite3.Connection, target: Store, reader: Store, report: Merged) -> None:
    """Everything of ``reader`` that ``target`` lacks, inside the target's open transaction."""
    for machine, print_ in reader.machines().items():
        db.execute("INSERT OR IGNORE INTO machines VALUES (?, ?)", (machine, json.dumps(print_)))
    run_ids = _absorb_runs(db, reader, report)
    columns = [c for c, _ in _models_columns(db)]
    for row in reader.models():
        cur = db.execute(f"INSERT OR IGNORE INTO models ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                         [row.get(c) for c in columns])
        report.models += cur.rowcount
    stored = {cell_key(r): r for r in target.cells(with_samples=True)}  # target.db is ``db``: this transaction's view
    for cell in reader.cells(with_samples=True):
        cell = {**cell, **Setup.of(cell).to_dict(), "run_id": run_ids[cell["run_id"]]}
        key = cell_key(cell)
        action, row = decide(stored.get(key), cell)
        report.cells[action] += 1
        if action == "conflict":
            report.conflicts.append(_conflict_words(stored[key], cell, kept_source=row is not None))
        if row is not None:
            insert_cells(db, [row])
            stored[key] = row
    _absorb_accuracy(db, target, reader, report)
    _absorb_serving(target, reader, run_ids, report)
    if reader._has("profiles"):
        for row in reader.db.execute("SELECT * FROM profiles"):
            db.execute("INSERT OR IGNORE INTO profiles VALUES (?, ?, ?, ?, ?, ?)", row)
        # by name: a source read as it is may be older than schema 17 (no stamp: timed again when used)
        columns = ", ".join(r[1] for r in reader.db.execute("PRAGMA table_info(kernels)"))
        for row in reader.db.execute(f"SELECT {columns} FROM kernels"):
            # a time stamped (schema 17) replaces one stored without a stamp, which would be timed again
            db.execute(f"INSERT INTO kernels ({columns}) VALUES ({', '.join('?' * len(row))}) "
                       "ON CONFLICT (machine, device, threads, dtype, kernel) DO UPDATE SET "
                       + ", ".join(f"{c} = excluded.{c}" for c in columns.split(", "))
                       + " WHERE kernels.stamp IS NULL AND excluded.stamp IS NOT NULL", row)
    if reader._has("in_model"):
        for row in reader.db.execute("SELECT * FROM in_model"):
            db.execute("INSERT OR IGNORE INTO in_model VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)


def _absorb_runs(db: sqlite3.Connection, reader: Store, report: Merged) -> dict[int, int]:
    """The reader's run ids mapped to the target's, each run added once (matched by uid)."""
    ids = {}
    for run in reader.runs():
        uid = run["uid"]
        found = db.execute("SELECT run_id FROM runs WHERE uid = ?", (uid,)).fetchone()
        if found is None:
            cur = db.execute("INSERT INTO runs (started_at, finished_at, outcome, argv, config, environment, uid) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (run["started_at"], run["finished_at"], run["outcome"], json.dumps(run["argv"]),
                              json.dumps(run["config"]), json.dumps(run["environment"]), uid))
            found = (cur.lastrowid,)
            report.runs += 1
        ids[run["run_id"]] = found[0]
    return ids


def _models_columns(db: sqlite3.Connection) -> list[tuple[str, str]]:
    return [(r[1], r[2]) for r in db.execute("PRAGMA table_info(models)")]


def _absorb_accuracy(db: sqlite3.Connection, target: Store, reader: Store, report: Merged) -> None:
    names = [c for c, _ in ACCURACY_COLUMNS]

    def values(row: dict) -> tuple:
        return tuple(json.dumps(row.get(c)) if c in _ACCURACY_JSON else row.get(c) for c in names)

    held = {values(r) for r in target.accuracies()}  # both read alike (an old resized head's row renamed)
    for row in reader.accuracies():
        found = values(row)
        if found not in held:
            db.execute(f"INSERT INTO accuracy ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", found)
            held.add(found)
            report.evaluations += 1


def _absorb_serving(target: Store, reader: Store, run_ids: dict[int, int], report: Merged) -> None:
    """The server scenario's points and the interleaved pairs' rows the target lacks (a row is added once
    however often it is merged)."""
    report.points += _absorb_rows(target.serving(), reader.serving(), SERVING_COLUMNS,
                                  target.put_serving_in_transaction, run_ids)
    report.pairs += _absorb_rows(target.pairs(), reader.pairs(), PAIR_COLUMNS, target.put_pair_in_transaction, run_ids)


def _absorb_rows(held_rows: list[dict], rows: list[dict], columns, put, run_ids: dict[int, int]) -> int:
    def key(row: dict) -> tuple:
        return tuple(json.dumps(row.get(c)) for c, _ in columns if c != "run_id")

    held, added = {key(r) for r in held_rows}, 0
    for row in rows:
        if key(row) not in held:
            put({**row, "run_id": run_ids.get(row.get("run_id"))})
            held.add(key(row))
            added += 1
    return added


def _conflict_words(target: dict, source: dict, kept_source: bool) -> str:
    def version(c: dict) -> str:
        if c["status"] != "ok":
            return f"{c['status']} at {c.get('measured_at')}"
        return f"{rounds_.rounds_of(c)} round(s), median {c['latency_median_s'] * 1e3:.3g} ms at {c.get('measured_at')}"

    setup = Setup.of(target).label(machine=True)
    return (f"{target['model']} ({target['input_size']} px) at batch {target['batch_size']}, {setup}: kept "
            f"{'the merged' if kept_source else 'the stored'} version ({version(source if kept_source else target)}) "
            f"over {version(target if kept_source else source)}")


__all__ = ["ACTIONS", "Merged", "decide", "merge"]
