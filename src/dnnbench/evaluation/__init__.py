"""`dnnbench eval`: accuracy measured on the user's images with the user's weights, in any setup.

The images are listed here (no model code runs in this process); each model is evaluated in a
worker process (`worker.py`), which reports progress and, per setup, its top-1 and top-5 hits. A
setup other than eager fp32 is evaluated beside eager fp32 on the same images, so the drop is paired.
Each result is stored in the database's ``accuracy`` table.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError
from ..launch import Job, Launcher
from ..measure.accuracy import evaluated_model, wilson
from ..setup import Setup
from ..worker import ACCURACY
from ..worker.images import find_images

# no record for this long (imports, then a backend's preparation: minutes on a small machine) is a hang
SILENCE_LIMIT_S = 1200.0


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
    with Launcher() as launcher:
        for entry in entries:
            rows += _evaluate_one(launcher, entry, setups, images, weights, batch_size, workers, eval_input_size,
                                  crop_pct, store, machine, progress, say)
    return rows


def _evaluate_one(launcher, entry, setups, images, weights, batch_size, workers, eval_input_size, crop_pct, store,
                  machine, progress, say) -> list[dict]:
    """One model's rows, evaluated by its own worker, stored as they come."""
    rows = []
    spec = {"model": entry.name, "input_size": entry.input_size, "weights": os.fspath(weights) if weights else None,
            "setups": [[s.backend, s.precision] for s in setups], "device": setups[0].device,
            "threads": setups[0].threads, "batch_size": batch_size, "workers": workers,
            "samples": list(images.samples), "classes": list(images.classes),
            "eval_input_size": eval_input_size, "crop_pct": crop_pct}
    found = _run_worker(launcher, spec, len(images.samples), progress)
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
    return {"model": evaluated_model(entry.name, said["weights"], said["heads_resized"]),
            "input_size": entry.input_size, "machine": machine or "unknown",
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


def _run_worker(launcher, spec: dict, total: int, progress: bool) -> dict:
    """One model evaluated by a fresh worker (its data loader forks processes of its own)."""
    from ..progressbar import bar

    worker = launcher.start(Job(ACCURACY, spec, spec["threads"]))
    found: dict = {"setup": None, "results": [], "error": None}
    shown = bar(total=total, desc=f"eval {spec['model']}", unit="image", enabled=progress, leave=False)
    try:
        for record in worker.records(idle_limit=SILENCE_LIMIT_S):
            kind = record.pop("type")
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
            elif kind == "fatal":
                found["error"] = f"evaluating {spec['model']} failed: {record['error']}"
    except TimeoutError as exc:
        found["error"] = (f"evaluating {spec['model']} stopped: {exc} (a model that hangs, or a backend preparing for "
                          "longer than that)")
    finally:
        rc = worker.end()
        shown.close()
    try:
        if found["error"]:
            raise UserError(found["error"])
        if not worker.finished or not found["results"]:
            raise UserError(f"evaluating {spec['model']} crashed ({worker.exit_words(rc)})")
    finally:
        worker.log.close()
    return found
