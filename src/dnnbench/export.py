"""`dnnbench export`: one row per cell, the keys every consumer of the CSV/JSON can rely on."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import tempfile

from .errors import UserError
from .text import spreadsheet_cell
from .store import Store

SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file

EXPORT_KEYS = [
    "model", "device", "backend", "precision", "batch_size", "status", "error",
    "latency_median_s", "latency_p90_s", "latency_p99_s", "latency_ci_low_s", "latency_ci_high_s", "samples",
    "images_per_s", "time_per_image_s", "cold_build_s", "cold_load_s", "cold_first_s",
    "mem_baseline_bytes", "mem_loaded_bytes", "mem_peak_bytes", "energy_per_image_j", "power_w",
    "run_id", "measured_at",
    # beyond the contract: what the figures need to be read right
    "input_size", "threads", "ci_rel", "stop_reason", "mem_load_peak_bytes", "mem_cuda_allocated_bytes",
    "mem_cuda_reserved_bytes", "mem_nvml_bytes", "idle_power_w", "energy_source", "energy_reason",
    "rounds", "round_medians",
    # what other processes used of the machine during the timed passes: disturbed cells are flagged
    "contention", "steal", "disturbed", "busy_attempts", "busy_wait_s", "gpu_other_processes",
    # the rest of the setup: the machine (--machine, else its fingerprint id) and the memory layout
    "machine", "layout",
    # the setup's preparation (part of the cold start) and its logits against eager fp32's
    "cold_prepare_s", "max_rel_error", "top1_agreement",
    # the bytes of the files a deployment of the setup ships (.onnx, .xml + .bin, .pte, .tflite, weights)
    "artifact_bytes",
    # the setup started again from its artifact in a fresh process: load + first pass, caches cold and warm
    "restart_cold_s", "restart_warm_s", "restart_reason",
    # the 95% upper bound of each tail percentile (null: too few samples for a bound, 29 for p90, 299 for p99)
    "latency_p90_high_s", "latency_p99_high_s",
]


def rows(store: Store) -> list[dict]:
    return [{k: cell.get(k) for k in EXPORT_KEYS} for cell in store.cells()]


def export(store: Store, fmt: str) -> str:
    data = rows(store)
    if fmt == "json":
        return json.dumps(data, indent=1) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_KEYS, lineterminator="\n")
    writer.writeheader()
    for row in data:
        writer.writerow({k: "" if v is None else json.dumps(v) if isinstance(v, list) else spreadsheet_cell(v)
                         for k, v in row.items()})
    return out.getvalue()


def is_sqlite(path) -> bool:
    """Whether ``path`` is a regular file that starts as an SQLite database does (never opens a pipe or device)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as f:
            return f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


def same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # either one missing
        return False


def check_output(path, db, force: bool) -> None:
    """Refuse to write ``path`` where that destroys the database ``db`` or any other SQLite database,
    unless ``force``; UserError naming the fix."""
    if force:
        return
    if same_file(path, db):
        raise UserError(f"--out {path} is the database being read (--db {db}); writing there would destroy it: "
                        "choose another file (or add --force to overwrite it anyway)")
    if is_sqlite(path):
        raise UserError(f"--out {path} is an SQLite database; writing there would destroy it: choose another file "
                        "(or add --force to overwrite it)")


def _special(path: str) -> bool:
    """Devices, pipes and /proc entries (/dev/full, /dev/stdout, a FIFO): written in place, never replaced."""
    if os.path.abspath(path).startswith(("/dev/", "/proc/")):
        return True
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


def write_output(path, text: str) -> None:
    """Write ``text`` to the file ``path`` whole or not at all: into a temporary file beside it, renamed
    over it once written, so a full disk or a crash never leaves half a file. Special files are written
    directly. Problems (missing folder, a folder at ``path``, no space, no permission) raise UserError."""
    path = str(path)
    if os.path.isdir(path):
        raise UserError(f"--out {path} is a folder: give a file name, e.g. {os.path.join(path, 'cells.csv')}")
    try:
        if _special(path):
            with open(path, "w", newline="") as f:
                f.write(text)
        else:
            _replace(os.path.realpath(path), text)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {_reason(path, exc)}") from exc


def _replace(target: str, text: str) -> None:
    folder = os.path.dirname(target)
    fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, _mode(target))
        os.replace(temp, target)
    except BaseException:
        os.unlink(temp)
        raise


def _mode(target: str) -> int:
    """The permissions ``target`` has, or those a new file gets (mkstemp's 0600 would hide it from others)."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _reason(path: str, exc: OSError) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"{existing} is a file, not a folder; choose another --out"
    if existing != folder:
        return f"folder {folder} does not exist; create it or choose another --out"
    return f"{exc.strerror or exc}; choose another --out"
