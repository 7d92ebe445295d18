"""Helpers shared by the benchmark scripts: run dnnbench and the plain loop as real processes."""

from __future__ import annotations

import json
import sqlite3
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
PY = sys.executable


def dnnbench_run(db: Path, models: list[str], batch_sizes: str, *extra: str) -> float:
    """Run `dnnbench run` as a user would; returns its wall time in seconds."""
    import time

    start = time.perf_counter()
    out = subprocess.run([PY, "-m", "dnnbench", "run", *models, "--batch-sizes", batch_sizes, "--db", str(db),
                          *extra], capture_output=True, text=True)
    if out.returncode not in (0, 1):
        raise SystemExit(f"dnnbench run failed: {out.stderr[-2000:]}")
    return time.perf_counter() - start


def cells(db: Path) -> list[dict]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT * FROM cells ORDER BY model, batch_size")]
    con.close()
    return rows


def plain(model: str, batch: int, threads: int, *extra: str) -> dict:
    out = subprocess.run([PY, str(HERE / "plain_loop.py"), model, "--batch", str(batch), "--threads", str(threads),
                          *extra], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def median(values) -> float:
    return statistics.median(values)
