"""PyTorch eager: the model as written, run op by op."""

from __future__ import annotations

import torch

from ..measure.device import DTYPE_NAMES, sync_function
from . import cpu
from .base import Backend, is_cuda

DTYPES = {p: getattr(torch, DTYPE_NAMES[p]) for p in ("fp32", "bf16", "fp16")}  # the float precisions


def float_support(backend: Backend, precision: str, device: str) -> str | None:
    """PyTorch's fp32 / bf16 / fp16 on ``device``: None, a warning (emulated), or a refusal."""
    if precision == "fp32":
        return None
    if is_cuda(device):
        if precision == "fp16" or torch.cuda.get_device_capability(device)[0] >= 8:
            return None
        if not torch.cuda.is_bf16_supported(including_emulation=True):
            raise backend.refuse(precision, device, "this GPU cannot hold bf16 tensors: use fp16")
        return "bf16 is emulated on this GPU (native bf16 came with compute capability 8.0, Ampere): use fp16"
    if precision == "bf16":
        if cpu.has_any(cpu.BF16):
            return None
        # oneDNN and PyTorch's own kernels convert bf16 to fp32 around every op: it runs, slowly
        return f"bf16 is emulated here ({cpu.lacks(cpu.BF16)}): expect it slower than fp32"
    if not cpu.has_any(cpu.FP16):
        raise backend.refuse(precision, device, f"PyTorch has native fp16 CPU kernels only with avx512_fp16 "
                             f"or amx_fp16, and {cpu.lacks(cpu.FP16)}: use bf16 or fp32")
    return None


def cast(model, precision: str):
    """``model`` in the precision's dtype, in place. Casting (rather than autocast) stores the weights
    in bf16/fp16 as a deployment would: half the weight memory and no per-pass weight casts, and eager
    and compile then run the same numeric work."""
    dtype = DTYPES[precision]
    return model if dtype == torch.float32 else model.to(dtype)


class Eager(Backend):
    name = "eager"

    def check(self, precision: str, device: str) -> str | None:
        if precision == "int8":
            # a pt2e-converted model computes in fp32 between quantize and dequantize steps until
            # inductor fuses them into int8 kernels: eager would time an emulation slower than fp32
            raise self.refuse(precision, device, "PyTorch's int8 (pt2e) runs as int8 kernels only once "
                              "torch.compile lowers it: use the compile backend")
        return float_support(self, precision, device)

    def _prepare(self, model, example, precision, device, threads, folder):
        torch.set_num_threads(threads)
        model = cast(model, precision)
        dtype = DTYPES[precision]
        sync = sync_function(device) or (lambda: None)

        def forward(x):
            with torch.inference_mode():
                y = model(x.to(dtype))  # the cast of the input is part of a bf16/fp16 pass
            sync()
            return y

        forward.weights = model  # what a deployment ships beside its code
        return forward

    def restart(self, files, shape, precision, device, threads, cache, architecture):
        model = cast(architecture(), precision)
        model.load_state_dict(torch.load(files[0], map_location=device, weights_only=True))
        return self._prepare(model.to(device).eval(), torch.zeros(shape, device=device), precision, device, threads,
                             cache)
