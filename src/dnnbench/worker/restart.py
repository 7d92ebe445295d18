"""The restart scenario: a setup started from its deployable files alone, as a deployment's process
starts (the sweep runs it twice after a model's first worker: the runtime's caches empty, then warm).

One ``restart`` record: ``seconds`` from reading the files to the end of the first pass (the
runtime's session or program made, the PyTorch backends' architecture built and weights loaded,
compile's code compiled or read from its cache), or ``reason`` where the files alone do not make the
step. The interpreter and the runtime's modules are imported before the clock starts: a process
start's import time depends on the disk's cache more than on the runtime."""

from __future__ import annotations

import time
from pathlib import Path

TORCH = True


def run(spec: dict, emit) -> int:
    import torch

    from ..backends import get_backend
    from ..backends.base import CannotRestart
    from ..measure.device import sync_function
    from ..zoo import get

    setup = spec["setup"]
    device = setup["device"]
    backend = get_backend(setup["backend"])  # imports the runtime
    entry = get(spec.get("base") or spec["model"], spec["input_size"], spec.get("weights_file"))
    entry.build("meta")  # imports the model's library
    shape = (spec["batch_size"], 3, entry.input_size, entry.input_size)
    layout = torch.channels_last if setup.get("layout") == "channels_last" else torch.contiguous_format
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device).contiguous(memory_format=layout)
    sync = sync_function(device) or (lambda: None)

    def architecture():
        return entry.build("cpu").to(memory_format=layout)

    t0 = time.perf_counter()
    try:
        step = backend.restart([Path(p) for p in spec["files"]], shape, setup["precision"], device,
                               int(setup["threads"]), Path(spec["cache"]), architecture)
    except CannotRestart as exc:
        emit("restart", reason=str(exc))
        return 0
    with torch.inference_mode():
        step(x)
    sync()
    emit("restart", seconds=time.perf_counter() - t0)
    return 0
