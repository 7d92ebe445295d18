"""`recommend --measure` against measuring the whole preset: the same answer, how many models measured, how long.

A: `dnnbench run --zoo ZOO --batch-sizes B --quick` into a fresh database, then `dnnbench recommend` on it.
B: `dnnbench recommend --measure --zoo ZOO --quick` on another fresh database.
Both on this machine, one after the other; prints the two answers, the models measured and the wall times.

    .venv/bin/python benchmarks/recommend_measure.py --zoo mobile --max-memory 1GB --max-latency 25ms
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def dnnbench(*args: str) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "dnnbench", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"dnnbench {' '.join(args)} failed: {out.stderr[-2000:]}")
    return time.perf_counter() - start, out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default="mobile")
    parser.add_argument("--batch-size", default="1")
    parser.add_argument("--max-memory", default="1GB")
    parser.add_argument("--max-latency", default="25ms")
    args = parser.parse_args()
    limits = ["--max-memory", args.max_memory, "--max-latency", args.max_latency, "--batch-size", args.batch_size]
    with tempfile.TemporaryDirectory() as scratch:
        full, measured = Path(scratch) / "full.db", Path(scratch) / "measure.db"
        run_s, _ = dnnbench("run", "--zoo", args.zoo, "--batch-sizes", args.batch_size, "--quick", "--db", str(full))
        answer_s, answer = dnnbench("recommend", "--db", str(full), *limits, "--json")
        everything = json.loads(answer)
        search_s, text = dnnbench("recommend", "--db", str(measured), *limits, "--measure", "--zoo", args.zoo, "--quick")
        _, found = dnnbench("recommend", "--db", str(measured), *limits, "--json")
        decided = json.loads(found)
    best_all = next((r["model"] for r in everything if r["passes"]), None)
    best_measure = next((r["model"] for r in decided if r["passes"]), None)
    print(f"whole preset: {len(everything)} models measured in {run_s + answer_s:.0f} s; answer: {best_all}")
    print(f"--measure:    {len(decided)} models measured in {search_s:.0f} s; answer: {best_measure}")
    print(f"same answer: {best_all == best_measure}\n")
    print(text)


if __name__ == "__main__":
    main()
