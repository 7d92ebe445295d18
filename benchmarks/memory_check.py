"""Memory: dnnbench's CPU peak against `/usr/bin/time -v`'s maximum resident set of an equivalent
standalone script (build the model, load its weights from a safetensors file, run passes at one
batch size: benchmarks/plain_loop.py).

The standalone maximum covers the whole process, loading included, so it is compared with the larger
of dnnbench's two peaks for the cell: loading (`mem_load_peak_bytes`) and inference
(`mem_peak_bytes`). The standalone runs twice: with glibc's defaults, and with the mmap threshold
fixed at 128 KiB as in dnnbench's memory phase (MALLOC_MMAP_THRESHOLD_=131072).

Target: within 5%.

    .venv/bin/python benchmarks/memory_check.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from common import HERE, PY, cells, dnnbench_run

CASES = [("resnet18", [1, 8, 32]), ("mobilenet_v2", [1, 8, 32]), ("vgg16", [1, 8])]


def max_rss(model: str, batch: int, weights: str, env: dict) -> int:
    out = subprocess.run(["/usr/bin/time", "-v", PY, str(HERE / "plain_loop.py"), model, "--batch", str(batch),
                          "--threads", "2", "--warmup", "1", "--passes", "2", "--weights", weights],
                         capture_output=True, text=True, env=env, check=True)
    kib = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr)
    return int(kib.group(1)) * 1024


def main() -> None:
    if not Path("/usr/bin/time").exists():
        sys.exit("needs /usr/bin/time (Debian: apt install time)")
    import torch
    import safetensors.torch

    from dnnbench.zoo import get

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model, batches in CASES:
            weights = os.path.join(tmp, f"{model}.safetensors")
            safetensors.torch.save_model(get(model).build("cpu"), weights)
            db = Path(tmp) / f"{model}.db"
            dnnbench_run(db, [model], ",".join(map(str, batches)), "--quick", "--threads", "2")
            for cell in cells(db):
                ours = max(cell["mem_load_peak_bytes"], cell["mem_peak_bytes"])
                default = max_rss(model, cell["batch_size"], weights, dict(os.environ))
                fixed = max_rss(model, cell["batch_size"], weights, {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"})
                rows.append((model, cell["batch_size"], cell["mem_peak_bytes"], ours, default, fixed))
                print(f"{model:13s} batch {cell['batch_size']:3d}: dnnbench inference peak "
                      f"{cell['mem_peak_bytes'] / 2**20:7.1f} MiB, max(load, inference) {ours / 2**20:7.1f} MiB | "
                      f"/usr/bin/time: default glibc {default / 2**20:7.1f} MiB ({ours / default - 1:+.1%}), "
                      f"fixed threshold {fixed / 2**20:7.1f} MiB ({ours / fixed - 1:+.1%})", flush=True)
    worst_default = max(abs(o / d - 1) for *_, o, d, f in rows)
    worst_fixed = max(abs(o / f - 1) for *_, o, d, f in rows)
    print(f"\nlargest difference: {worst_default:.1%} against glibc defaults, {worst_fixed:.1%} against the same "
          f"allocator setting; torch {torch.__version__}")


if __name__ == "__main__":
    main()
