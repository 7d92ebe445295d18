"""Record every registry model's profile at the shipped batch sizes and write the file dnnbench ships
(`dnnbench.profiling.shipped`). Run it after changing the pinned torch, the recorder (raise
`profiling.PROFILE_FORMAT`) or the timm and pretrainedmodels the setup installs:

    .venv/bin/python scripts/ship_profiles.py [--out src/dnnbench/profiling/data/profiles.json.xz]

Building 1,500 models on the meta device takes minutes on two workers; a model that cannot be
profiled is named and left out (it is profiled, and fails, where it is asked for).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from dnnbench.profiling import PROFILE_FORMAT, profiles, shipped  # noqa: E402
from dnnbench.zoo import all_names, get  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(shipped.PATH))
    parser.add_argument("--limit", type=int, default=None, help="only the first N models (to try the script)")
    args = parser.parse_args()
    names = all_names()[: args.limit]
    entries = [get(n) for n in names]
    wanted = [(e.name, e.input_size, b) for b in shipped.BATCH_SIZES for e in entries]
    start = time.monotonic()

    def progress(done: int, total: int) -> None:
        if done % 100 == 0 or done == total:
            print(f"{done}/{total} profiles, {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)

    found, errors = profiles(wanted, None, progress=progress)
    for (name, _, batch), error in sorted(errors.items()):
        print(f"left out {name} at batch {batch}: {error}", file=sys.stderr)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    shipped.write(args.out, found, PROFILE_FORMAT)
    print(f"{len(found)} profiles of {len(entries)} models, {len(errors)} left out, "
          f"{Path(args.out).stat().st_size / 1e6:.2f} MB: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
