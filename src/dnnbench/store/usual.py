"""This machine's usual time for each cell, across runs and databases: what a run's intervals cannot see.

A cell's interval covers what varied while it was measured: its passes, and with rounds the drift
between them. On a shared host the whole machine also runs slower or faster for minutes at a time
(other tenants on sibling hyperthreads, shared caches, clocks), so a run that fell in a slow phase has
every cell slower than its interval says a later run will find (benchmarks/drift.py: whole runs at 0.93
to 1.12x the usual). No counter inside the run sees it; only earlier runs of the same cells do.

So every sweep keeps each cell's median in a small record beside the user's other caches, per machine
and per set of library versions, dnnbench's own included (an upgrade starts a new usual, it does not
hide in it: 0.2.0 times eager passes with freed memory kept, up to 3x faster at batch 16), and checks
the cells it measured against the median of their earlier runs: a cell whose interval excludes that
usual time is flagged (`off`), and the run says how far its cells sat from their usual as a whole.

The record is ``$DNNBENCH_USUAL``, else ``$XDG_CACHE_HOME/dnnbench/usual.sqlite`` (``~/.cache`` by
default). It holds the last `KEEP` runs of each cell; it is never needed: a record that cannot be read
or written is left as it is, and the run says so and measures on unchecked.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import statistics
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..setup import CELL_KEY, cell_key

RECORD_ENV = "DNNBENCH_USUAL"
KEEP = 20  # earlier runs kept per cell: enough for a stable median, few enough to follow a machine that changes


def record_path() -> Path:
    found = os.environ.get(RECORD_ENV)
    if found:
        return Path(found)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "dnnbench" / "usual.sqlite"


def stamp(software: dict) -> str:
    """The versions of Python and the libraries a usual time holds for (``measure.device.software()``'s
    answer, less the interpreter's path): a new version starts a new usual."""
    return json.dumps({k: v for k, v in software.items() if k != "executable"}, sort_keys=True)


def cell_id(cell: dict) -> str:
    return json.dumps(cell_key(cell))


def check(cells: list[dict], stamp_: str, run_uid: str) -> list[dict]:
    """``cells`` (a run's, with their key) checked against the record: each cell's key with its ``usual_s``
    and ``usual_runs`` (`Record.usual`); then their medians join the record, but a disturbed cell's
    (the machine's usual is not what others made of it). `UserError` naming the file and the fix where
    the record cannot be opened, read or written: it is left as it is."""
    with Record() as record:
        try:
            found = record.usual(cells, stamp_, run_uid)
            record.add([c for c in cells if not c.get("disturbed")], stamp_, run_uid)
        except sqlite3.Error as exc:
            raise record.unusable(exc) from None
    return found


def off(cell: dict) -> float | None:
    """The cell's median over its usual time where its 95% interval excludes that usual time (it is off
    this machine's usual), else None (within it, or no usual time known)."""
    usual, low, high = cell.get("usual_s"), cell.get("latency_ci_low_s"), cell.get("latency_ci_high_s")
    if not usual or low is None or high is None or low <= usual <= high:
        return None
    return cell["latency_median_s"] / usual


@dataclass(frozen=True)
class Against:
    """A run's cells against their usual times: ``checked`` cells had earlier runs (``runs``: the fewest
    and most), ``off`` of them lie outside their intervals from it, ``ratio`` is their median time over
    their usual (the run's shift as a whole), ``new``: cells with no earlier run."""

    checked: int
    off: int
    ratio: float | None
    runs: tuple[int, int] | None
    new: int
    path: str

    def to_dict(self) -> dict:
        return {"checked": self.checked, "off": self.off, "ratio": self.ratio,
                "runs": list(self.runs) if self.runs else None, "new": self.new, "record": self.path}


def against(cells: list[dict]) -> Against:
    """The summary of ``cells`` whose ``usual_s`` and ``usual_runs`` are filled in (None: no earlier run)."""
    checked = [c for c in cells if c.get("usual_s")]
    ratios = [c["latency_median_s"] / c["usual_s"] for c in checked]
    runs = [c["usual_runs"] for c in checked]
    return Against(checked=len(checked), off=sum(off(c) is not None for c in checked),
                   ratio=math.exp(statistics.median(math.log(r) for r in ratios)) if ratios else None,
                   runs=(min(runs), max(runs)) if runs else None, new=len(cells) - len(checked),
                   path=str(record_path()))


class Record:
    """The record file, opened (created if missing); `UserError` with the fix where it cannot be."""

    def __init__(self, path: Path | None = None):
        self.path = path or record_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA busy_timeout = 30000")
            self.db.execute("CREATE TABLE IF NOT EXISTS medians (machine TEXT NOT NULL, cell TEXT NOT NULL, "
                            "stamp TEXT NOT NULL, run_uid TEXT NOT NULL, median_s REAL NOT NULL, "
                            "measured_at TEXT, PRIMARY KEY (machine, cell, stamp, run_uid))")
        except (OSError, sqlite3.Error) as exc:
            raise self.unusable(exc) from None

    def unusable(self, exc: Exception) -> UserError:
        return UserError(f"this machine's record of usual cell times ({self.path}) cannot be used ({exc}): move "
                         f"{self.path} aside (it is only a cache) or set {RECORD_ENV} to another file")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Record:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def usual(self, cells: list[dict], stamp_: str, run_uid: str) -> list[dict]:
        """``cells`` (with their key) each with ``usual_s``, the median of its earlier runs' medians, and
        ``usual_runs``, how many (None and 0 where there are none); this run's own entries are not
        earlier runs."""
        out = []
        for cell in cells:
            found = [r[0] for r in self.db.execute(
                "SELECT median_s FROM medians WHERE machine = ? AND cell = ? AND stamp = ? AND run_uid != ?",
                (cell["machine"], cell_id(cell), stamp_, run_uid))]
            out.append({**{k: cell[k] for k in CELL_KEY}, "usual_s": statistics.median(found) if found else None,
                        "usual_runs": len(found)})
        return out

    def add(self, cells: list[dict], stamp_: str, run_uid: str) -> None:
        """Record ``cells``' medians as this run's, keeping the last `KEEP` runs of each; one transaction."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for cell in cells:
                where = (cell["machine"], cell_id(cell), stamp_)
                self.db.execute("INSERT OR REPLACE INTO medians VALUES (?, ?, ?, ?, ?, ?)",
                                (*where, run_uid, cell["latency_median_s"], cell.get("measured_at")))
                self.db.execute("DELETE FROM medians WHERE machine = ? AND cell = ? AND stamp = ? AND rowid NOT IN "
                                "(SELECT rowid FROM medians WHERE machine = ? AND cell = ? AND stamp = ? "
                                "ORDER BY measured_at DESC LIMIT ?)", (*where, *where, KEEP))
