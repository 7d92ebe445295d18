"""ExecuTorch on the CPU: the model exported (torch.export) at each batch size, lowered to the XNNPACK
delegate and written as the .pte file a device ships, then run by ExecuTorch's own C++ runtime through
its Python bindings (the runtime a phone runs, on this CPU). int8 by XNNPACK's quantizer (PT2E,
static, symmetric per-channel weights), calibrated like the other backends."""

from __future__ import annotations

from .base import Backend, exporting, is_cuda, program_per_batch, require
from .correctness import quantized_pt2e

EXTRA = "executorch"


class ExecuTorch(Backend):
    name = "executorch"

    needs = ("executorch", "executorch.exir", "executorch.runtime")
    extra = EXTRA

    def check(self, precision: str, device: str) -> str | None:
        require("executorch", EXTRA)
        if is_cuda(device):
            raise self.refuse(precision, device, "this backend runs ExecuTorch's XNNPACK delegate, a CPU "
                              "runtime: use --device cpu")
        if precision in ("bf16", "fp16"):
            raise self.refuse(precision, device, f"XNNPACK's {precision} path targets Arm phones; on x86 "
                              "ExecuTorch lowers fp32 and int8 only: use fp32 or int8")
        if precision == "int8":
            require("torchao", "quant")
        return None

    def _prepare(self, model, example, precision, device, threads, folder):
        import torch

        graph = quantize_xnnpack(model, example) if precision == "int8" else model

        def write(path, shape):
            path.write_bytes(lowered(graph, torch.zeros(shape, dtype=example.dtype)).buffer)

        return program_per_batch(folder, "pte", write, lambda path: loaded(path, threads), example.shape)

    def restart(self, files, shape, precision, device, threads, cache, architecture):
        return loaded(files[0], threads)


def loaded(path, threads: int):
    """The step of the ExecuTorch program at ``path``, run by ExecuTorch's runtime on ``threads``."""
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    # XNNPACK's pool is process-wide and sized to the performance cores by default
    portable_lib._unsafe_reset_threadpool(threads)
    method = Runtime.get().load_program(path).load_method("forward")

    def step(x):
        # a copy: the runtime's output buffer is overwritten by the next pass
        return method.execute([x.contiguous()])[0].clone()

    return step


def lowered(model, example):
    """``model`` exported at ``example``'s shape (static: the shape a deployment ships) and lowered
    to XNNPACK, as an ExecuTorch program (``.buffer``: the .pte file's bytes)."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    with torch.no_grad(), exporting("executorch"):
        exported = torch.export.export(model, (example,))
    return to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch()


def quantize_xnnpack(model, example):
    """``model`` quantized for XNNPACK: symmetric per-channel int8 weights, static int8 activations."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    return quantized_pt2e(model, example, quantizer)
