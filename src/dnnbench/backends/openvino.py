"""OpenVINO on the CPU: the exported ONNX graph compiled for the CPU plugin with the LATENCY hint;
bf16 / fp16 through the inference-precision hint, int8 by NNCF's post-training quantization."""

from __future__ import annotations

import functools

import torch

from . import cpu
from .base import Backend, PerShape, is_cuda, require
from .correctness import calibration_inputs
from .onnx_export import export_onnx

EXTRA = "openvino"
# The precision of the ops that are not quantized. Set always: on CPUs with native bf16 (AMX,
# AVX512-BF16) OpenVINO's default is bf16, which would make "fp32" bf16; int8 keeps fp32 around its
# quantized ops, as in the other backends.
HINTS = {"fp32": "f32", "int8": "f32", "bf16": "bf16", "fp16": "f16"}
CAPABILITY = {"bf16": ("BF16", cpu.BF16), "fp16": ("FP16", cpu.FP16)}


@functools.cache
def core():
    import openvino as ov

    return ov.Core()


class OpenVino(Backend):
    name = "openvino"

    needs = ("openvino", "onnx", "onnxscript")
    extra = EXTRA

    def check(self, precision: str, device: str) -> str | None:
        require("openvino", EXTRA)
        if is_cuda(device):
            raise self.refuse(precision, device, "OpenVINO's GPU plugin drives Intel GPUs, not CUDA ones: "
                              "use --device cpu")
        if precision in CAPABILITY:
            # OpenVINO does not emulate: without native support it runs fp32 under a bf16 / f16 hint
            # silently (2026.4 on an AVX2 CPU reported f32 for both)
            name, flags = CAPABILITY[precision]
            if name not in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
                raise self.refuse(precision, device, f"OpenVINO runs {precision} only natively, and "
                                  f"{cpu.lacks(flags)}")
        if precision == "int8":
            require("nncf", EXTRA)
            if not cpu.has_any(cpu.INT8_DOT):
                return (f"int8 runs without dot-product instructions here ({cpu.lacks(cpu.INT8_DOT)}): "
                        "maybe no faster than fp32")
        return None

    def _prepare(self, model, example, precision, device, threads, folder):
        graph = core().read_model(str(export_onnx(model, example, folder / "model.onnx", EXTRA)))
        if precision == "int8":
            graph = quantize_nncf(graph, example)
        config = compile_config(precision, threads)

        def build(shape):
            return _compiled(graph, shape, config)

        # what a deployment ships: OpenVINO's own IR (.xml + .bin), weights as computed (no fp16 compression)
        import openvino as ov

        ov.save_model(graph, str(folder / "model.xml"), compress_to_fp16=False)
        forward = PerShape(build)
        forward.ready(tuple(example.shape))
        forward.shipped = [folder / "model.xml", folder / "model.bin"]
        return forward

    def restart(self, files, shape, precision, device, threads, cache, architecture):
        # OpenVINO's model cache in ``cache``: the compiled blob written at the first start, read at the next
        return _compiled(core().read_model(str(files[0])), shape,
                         {**compile_config(precision, threads), "CACHE_DIR": str(cache)})


def compile_config(precision: str, threads: int) -> dict:
    """How this backend compiles a graph for the CPU: the LATENCY hint, ``threads``, the precision hint."""
    return {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
            "INFERENCE_PRECISION_HINT": HINTS[precision]}


def _compiled(graph, shape, config: dict):
    """The step of ``graph`` compiled for ``shape``: static shapes are what OpenVINO runs fastest."""
    graph.reshape(list(shape))
    request = core().compile_model(graph, "CPU", config).create_infer_request()

    def step(x):
        request.infer({0: x.detach().cpu().numpy()}, share_inputs=True)
        # a copy: the request overwrites its output tensor at the next pass
        return torch.from_numpy(request.get_output_tensor(0).data.copy())

    return step


def quantize_nncf(graph, example):
    """``graph`` quantized by NNCF's post-training quantization, calibrated on generated inputs.

    On CPUs without VNNI, whose u8 x s8 products saturate 16-bit sums, with the overflow fix in
    every layer (7-bit weights) rather than the first only: MobileNet-v3's logits were 46% off
    without it, 31% with it. Graphs with attention (a Softmax) as NNCF's transformer type, which
    leaves the attention's sensitive ops in floating point: ViT-B/16's logits were 48% off without
    it, 11% with it."""
    import logging

    import nncf

    nncf.set_log_level(logging.ERROR)
    inputs = [x.numpy() for x in calibration_inputs(tuple(example.shape[1:]))]
    fix = nncf.OverflowFix.FIRST_LAYER if cpu.has_any(cpu.INT8_DOT) else nncf.OverflowFix.ENABLE
    attention = any(op.get_type_name() == "Softmax" for op in graph.get_ops())
    return nncf.quantize(graph, nncf.Dataset(inputs), subset_size=len(inputs),
                         model_type=nncf.ModelType.TRANSFORMER if attention else None,
                         advanced_parameters=nncf.AdvancedQuantizationParameters(overflow_fix=fix))
