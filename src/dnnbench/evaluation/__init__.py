"""`dnnbench eval`: accuracy measured on the user's images with the user's weights, in any setup.

The images are listed here (no model code runs in this process); each model is evaluated in a
worker process (`worker.py`), which reports progress and, per setup, its top-1 and top-5 hits. A
setup other than eager fp32 is evaluated beside eager fp32 on the same images, so the drop is paired.
Each result is stored in the database's ``accuracy`` table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import UserError
from ..measure.accuracy import wilson
from ..runner.sweep import describe_exit
from ..setup import Setup
from .data import find_images
from .worker import EVAL_FD_ENV


def evaluate(entries, setups: list[Setup], data, *, weights=None, labels=None, batch_size: int = 32,
             limit: int | None = None, workers: int = 2, eval_input_size: int | None = None,
             crop_pct: float | None = None, store=None, machine: str | None = None,
             progress: bool = True, say=lambda text: None) -> list[dict]:
    """Evaluate each model of ``entries`` in each of ``setups`` (one device and thread count), and in
    eager fp32 beside them, on the labelled images of ``data``, in one pass over the images per model;
    returns one row per (model, setup evaluated) with top1/top5 (%), their 95% Wilson intervals, images, skipped
    and images per second, and stores them in ``store`` (a writable `Store`) when given."""
    images = find_images(data, labels, limit)
    if weights is not None and not Path(weights).is_file():
        raise UserError(f"weights file {weights} does not exist (or is not a file): give the path of a "
                        ".safetensors, .pth or .pt file")
    rows = []
    for entry in entries:
        spec = {"model": entry.name, "input_size": entry.input_size, "weights": os.fspath(weights) if weights else None,
                "setups": [[s.backend, s.precision] for s in setups], "device": setups[0].device,
                "threads": setups[0].threads, "batch_size": batch_size, "workers": workers,
                "samples": list(images.samples), "classes": list(images.classes),
                "eval_input_size": eval_input_size, "crop_pct": crop_pct}
        found = _run_worker(spec, len(images.samples), progress)
        said = found["setup"]
        say(f"{entry.name}: classes mapped as {said['mapping']}; preprocessing: resize {said['preprocess']['resize']}, "
            f"crop {said['preprocess']['crop']} ({said['preprocess']['source']})"
            + (f"; head resized to the weights: {', '.join(said['heads_resized'])}" if said["heads_resized"] else ""))
        for result in found["results"]:
            row = _row(entry, setups[0], images, said, result, machine)
            if store is not None:
                store.put_accuracy(row)
            rows.append(row)
    return rows


def _row(entry, setup: Setup, images, said: dict, result: dict, machine: str | None) -> dict:
    n = result["images"]
    top1 = wilson(result["top1_hits"], n)
    # with 5 classes or fewer every image is in the top five: no figure
    five = result["top5_hits"] if said["outputs"] > 5 else None
    top5 = wilson(five, n) if five is not None else (None, None)
    return {"model": entry.name, "input_size": entry.input_size, "machine": machine or "unknown",
            "device": setup.device, "backend": result["backend"], "precision": result["precision"],
            "threads": setup.threads, "layout": setup.layout, "weights": said["weights"], "data": images.root,
            "images": n, "top1_hits": result["top1_hits"], "top5_hits": five,
            "top1": 100 * result["top1_hits"] / n, "top1_low": 100 * top1[0], "top1_high": 100 * top1[1],
            "top5": _pct(five, n), "top5_low": _pct(top5[0], 1), "top5_high": _pct(top5[1], 1),
            "skipped": result["skipped"], "skipped_examples": result["skipped_examples"],
            "images_per_s": result["images_per_s"], "mapping": said["mapping"], "preprocess": said["preprocess"],
            "calibration": result.get("calibration"), "heads_resized": said["heads_resized"]}


def _pct(part, whole) -> float | None:
    return None if part is None else 100 * part / whole


def _run_worker(spec: dict, total: int, progress: bool) -> dict:
    from ..progressbar import bar

    read_fd, write_fd = os.pipe()
    log = tempfile.TemporaryFile(mode="w+")
    env = {**os.environ, EVAL_FD_ENV: str(write_fd)}
    try:
        proc = subprocess.Popen([sys.executable, "-m", "dnnbench.evaluation.worker"], stdin=subprocess.PIPE,
                                stdout=log, stderr=log, pass_fds=(write_fd,), env=env, text=True)
    finally:
        os.close(write_fd)
    found: dict = {"setup": None, "results": [], "error": None}
    shown = bar(total=total, desc=f"eval {spec['model']}", unit="image", enabled=progress, leave=False)
    try:
        proc.stdin.write(json.dumps(spec))
        proc.stdin.close()
        with os.fdopen(read_fd) as records:
            for line in records:
                record = json.loads(line)
                kind = record.pop("kind")
                if kind == "progress":
                    shown.update(record["done"] - shown.n)
                    if record["skipped"]:
                        shown.set_postfix_str(f"{record['skipped']} unreadable")
                elif kind == "setup":
                    found["setup"] = record
                elif kind == "result":
                    found["results"].append(record)
                elif kind == "error":
                    found["error"] = record["message"]
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        shown.close()
    if found["error"]:
        raise UserError(found["error"])
    if rc != 0 or not found["results"]:
        log.seek(0)
        tail = " | ".join(line.strip() for line in log.read().strip().splitlines()[-3:])
        raise UserError(f"evaluating {spec['model']} crashed ({describe_exit(rc)}){': ' + tail if tail else ''}")
    return found
