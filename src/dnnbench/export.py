"""`dnnbench export`: one row per cell, the keys every consumer of the CSV/JSON can rely on."""

from __future__ import annotations

import csv
import io
import json

from .store import Store

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
        writer.writerow({k: "" if v is None else json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
    return out.getvalue()
