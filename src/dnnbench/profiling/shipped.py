"""Profiles shipped with dnnbench: every registry model's kernels at the batch sizes `predict` asks for
most (1 and 16), so that `predict --all` builds no model on a fresh installation.

They are recorded by `scripts/ship_profiles.py` exactly as `profiling.profiles` records them, with the
pinned torch and torchvision and the timm and pretrainedmodels of that day. A model's shipped profile
serves only where the profile format, torch and the libraries the model comes from are the versions
installed: after an upgrade its kernels may differ, and it is recorded anew. The file keys each
kernel once (most kernels recur across models), compressed with xz.
"""

from __future__ import annotations

import functools
import json
import lzma
from importlib import metadata
from pathlib import Path

PATH = Path(__file__).with_name("data") / "profiles.json.xz"
BATCH_SIZES = (1, 16)
PACKAGES = ("torch", "torchvision", "timm", "pretrainedmodels")
# the libraries a model's kernels depend on, by the registry's source (dnnbench's own models depend on
# its code, which ships with the file: tests/test_shipped_profiles.py records one afresh; the user's
# models are not shipped)
_NEEDS = {"torchvision": ("torch", "torchvision"), "timm": ("torch", "timm"),
          "pretrainedmodels": ("torch", "torchvision", "pretrainedmodels"), "dnnbench": ("torch",)}


def libraries() -> dict[str, str | None]:
    """{package: installed version, or None}."""
    found = {}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def write(path: str | Path, profiles: dict[tuple[str, int, int], dict], profile_format: int) -> None:
    """Write ``profiles`` ({(registry name, input size, batch): profile dict}) as a shipped file."""
    kernels: dict[str, int] = {}
    table: list = []
    by_batch: dict[str, dict] = {}
    for (name, size, batch), found in sorted(profiles.items()):
        calls = []
        for key, n in found["calls"].items():
            if key not in kernels:
                kernels[key] = len(table)
                table.append([key, *found["specs"][key]])
            calls.append([kernels[key], n])
        then = [[kernels[key], epilogues] for key, epilogues in found.get("then", {}).items()]
        by_batch.setdefault(str(batch), {})[f"{name}@{size}"] = {"calls": calls, "then": then,
                                                                 "weights_bytes": found.get("weights_bytes")}
    data = {"format": profile_format, "libraries": libraries(), "kernels": table, "profiles": by_batch}
    with lzma.open(path, "wt", preset=9) as out:
        json.dump(data, out, separators=(",", ":"))


@functools.lru_cache(maxsize=2)
def _load(path: str) -> dict | None:
    try:
        with lzma.open(path, "rt") as src:
            return json.load(src)
    except (OSError, ValueError, EOFError, lzma.LZMAError):  # absent or damaged: models are profiled instead
        return None


def lookup(wanted: list[tuple[str, int, int]], profile_format: int, path: str | Path | None = None) -> dict:
    """{(name, input size, batch): profile dict} of the ``wanted`` that ``path`` ships for the versions
    installed (see the module)."""
    from ..zoo.registry import get, is_user_model

    data = _load(str(path or PATH))
    if not data or data.get("format") != profile_format:
        return {}
    installed = libraries()
    same = {p for p in PACKAGES if installed.get(p) is not None and data["libraries"].get(p) == installed[p]}
    found = {}
    for key in wanted:
        name, size, batch = key
        shipped = data["profiles"].get(str(batch), {}).get(f"{name}@{size}")
        if shipped is None or is_user_model(name):
            continue
        needs = _NEEDS.get(get(name).source)
        if needs is None or not set(needs) <= same:
            continue
        table = data["kernels"]
        specs = {table[i][0]: table[i][1:] for i, _ in shipped["calls"]}
        found[key] = {"calls": {table[i][0]: n for i, n in shipped["calls"]}, "specs": specs,
                      "then": {table[i][0]: epilogues for i, epilogues in shipped["then"]},
                      "weights_bytes": shipped["weights_bytes"]}
    return found
