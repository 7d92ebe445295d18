"""torch.compile (inductor), and PyTorch's int8: torchao's pt2e quantization lowered by inductor.

Code is compiled for one batch size at a time (static shapes, the fastest code inductor makes): the
preparation compiles the example's, and each later batch size compiles at its first call.
"""

from __future__ import annotations

import os
import shutil

import torch

from ..measure.device import sync_function
from . import cpu
from .base import CannotRestart, PerShape, is_cuda, require
from .correctness import quantized_pt2e
from .eager import DTYPES, Eager, cast


class Compile(Eager):
    name = "compile"

    def check(self, precision: str, device: str) -> str | None:
        if not is_cuda(device) and not shutil.which(os.environ.get("CXX") or "g++"):
            raise self.refuse(precision, device, "inductor compiles C++ for the CPU and finds no compiler: "
                              "sudo apt-get install g++")
        if precision != "int8":
            return super().check(precision, device)
        if is_cuda(device) or not cpu.is_x86():
            raise self.refuse(precision, device, "PyTorch's int8 path (pt2e with X86InductorQuantizer) "
                              "targets x86 CPUs: use --device cpu on an x86 machine")
        require("torchao", "quant")
        if not cpu.has_any(cpu.INT8_DOT):
            return (f"int8 runs without dot-product instructions here ({cpu.lacks(cpu.INT8_DOT)}): "
                    "7-bit activations, and maybe no faster than fp32")
        return None

    def _prepare(self, model, example, precision, device, threads, folder):
        torch.set_num_threads(threads)
        settings = _Settings(folder / "inductor")
        try:
            build = self._builder(model, example, precision, device)
            forward = PerShape(build, settings.close)
            forward(example)  # compiles: the first call is part of the preparation
            forward.weights = build.module  # shipped beside the code, which is built where it runs
        except BaseException:
            settings.close()
            raise
        return forward

    def restart(self, files, shape, precision, device, threads, cache, architecture):
        if precision == "int8":  # the quantized graph is made by quantizing the model, not read from a file
            raise CannotRestart("compile's int8 graph is quantized from the model at each start, not loaded "
                                "from a file")
        # inductor's cache in ``cache``: empty at the first restart, filled for the second
        return super().restart(files, shape, precision, device, threads, cache, architecture)

    @staticmethod
    def _builder(model, example, precision, device):
        """The ``build(shape)`` of a PerShape: the compiled model, reset for each new batch size."""
        # int8: importing torchao's X86InductorQuantizer registered the passes with which inductor
        # fuses quantize-dequantize pairs around convolutions and linears into oneDNN int8 kernels
        module = quantize_pt2e(model, example) if precision == "int8" else cast(model, precision)
        compiled = torch.compile(module, dynamic=False)
        dtype = DTYPES.get(precision, torch.float32)
        sync = sync_function(device) or (lambda: None)

        def step(x):
            with torch.no_grad():  # freezing applies only with grad off
                y = compiled(x.to(dtype))
            sync()
            return y

        def build(shape):
            torch.compiler.reset()  # drops the code (and frozen weights) of the last batch size
            return step

        build.module = module
        return build


class _Settings:
    """Inductor's settings for this preparation, until ``close()``.

    Freezing: the weights become constants of the graph, so BatchNorm folds into the convolutions
    and the weights are prepacked for oneDNN once, as PyTorch recommends for CPU inference; int8
    needs it. Set globally: as a torch.compile option it did not reach int8's weight prepacking,
    which then failed (torch 2.14, torchao 0.18).

    The cache in ``folder``: a cache of earlier runs would make the compile time depend on what ran
    before (a second process compiled int8 in 2.6 s instead of 9.9 s): every preparation starts
    empty, as on a fresh machine."""

    def __init__(self, folder):
        import torch._inductor.config as inductor

        self._inductor = inductor
        self._before = os.environ.get("TORCHINDUCTOR_CACHE_DIR"), inductor.freezing
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
        inductor.freezing = True
        torch.compiler.reset()

    def close(self) -> None:
        torch.compiler.reset()
        cache, self._inductor.freezing = self._before
        if cache is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache


def quantize_pt2e(model, example) -> torch.fx.GraphModule:
    """``model`` quantized to int8 (u8 activations, s8 per-channel weights) by torchao's pt2e flow
    with X86InductorQuantizer, for inductor to lower."""
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    quantizer = xiq.X86InductorQuantizer()
    # 7-bit activations where u8 x s8 products would saturate the 16-bit sums of non-VNNI CPUs
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config(
        reduce_range=not cpu.has_any(cpu.INT8_DOT)))
    # strict (dynamo) tracing tells apart two calls of one module (ResNet's blocks call their ReLU
    # twice): the non-strict trace merged them into one partition, which this quantizer rejects
    # ("Input partition has more than one output node", torch 2.14 with torchao 0.18)
    return quantized_pt2e(model, example, quantizer, strict=True)
