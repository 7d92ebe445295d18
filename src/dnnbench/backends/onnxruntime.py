"""ONNX Runtime: the exported ONNX graph run by its CPU execution provider (CUDA's on a GPU); int8 by
static quantization to QDQ format."""

from __future__ import annotations

import torch

from . import cpu
from .base import Backend, is_cuda, require
from .correctness import calibration_inputs
from .onnx_export import INPUT, export_onnx, onnx_files

EXTRA = "onnx"


class OnnxRuntime(Backend):
    name = "onnxruntime"

    needs = ("onnx", "onnxscript", "onnxruntime")
    extra = EXTRA

    def check(self, precision: str, device: str) -> str | None:
        ort = require("onnxruntime", EXTRA)
        cuda = is_cuda(device)
        if cuda and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise self.refuse(precision, device, "this onnxruntime has no CUDA execution provider: "
                              "pip install onnxruntime-gpu in place of onnxruntime")
        if precision == "bf16":
            raise self.refuse(precision, device, "onnxruntime has no bf16 kernels for convolutions on the "
                              "CPU (1.32: no implementation for Conv(22)), and this backend converts models "
                              "to fp16 only: use fp16 on cuda, or fp32 / int8")
        if precision == "fp16" and not cuda:
            # checked with onnxruntime 1.32: the optimised graph converts every weight back to fp32
            raise self.refuse(precision, device, "onnxruntime's CPU provider has no fp16 convolution kernel "
                              "for x86 and casts the model back to fp32, so fp16 would time fp32 plus casts "
                              "(this backend offers fp16 on CUDA only): use fp32 or int8")
        if precision == "int8":
            if cuda:
                raise self.refuse(precision, device, "QDQ int8 runs as int8 kernels on the CPU provider "
                                  "(on a GPU onnxruntime needs TensorRT for it): use --device cpu")
            if not cpu.has_any(cpu.INT8_DOT):
                return (f"int8 runs without dot-product instructions here ({cpu.lacks(cpu.INT8_DOT)}): "
                        "7-bit weights, and maybe no faster than fp32")
        return None

    def _prepare(self, model, example, precision, device, threads, folder):
        path = export_onnx(model, example, folder / "model.onnx", EXTRA)
        if precision == "int8":
            path = quantize_static(path, example, folder)
        elif precision == "fp16":
            path = to_fp16(path, folder)
        return self._started(path, device, threads)

    def restart(self, files, shape, precision, device, threads, cache, architecture):
        return self._started(files[0], device, threads)

    @staticmethod
    def _started(path, device: str, threads: int):
        """The step of a session on the ONNX file at ``path``."""
        import onnxruntime as ort

        options = session_options(threads)
        if is_cuda(device):
            index = torch.device(device).index or 0
            session = ort.InferenceSession(str(path), options, providers=[
                ("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"])
            step = _cuda_step(session, index)
            step.shipped = onnx_files(path)
            return step
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def forward(x):
            return torch.from_numpy(session.run(None, {INPUT: x.detach().cpu().numpy()})[0])

        forward.shipped = onnx_files(path)
        return forward


def session_options(threads: int):
    """How this backend sets up a session: ``threads`` intra-op threads, sequential, every graph optimisation."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # the calling thread is one of them
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def _cuda_step(session, index: int):
    """The input read where it lies on the GPU (no copy through the host); the logits come back to
    the host, which also waits for the GPU."""
    import numpy as np

    binding = session.io_binding()
    output = session.get_outputs()[0].name

    def forward(x):
        x = x.detach().contiguous()
        binding.bind_input(INPUT, "cuda", index, np.float32, tuple(x.shape), x.data_ptr())
        binding.bind_output(output, "cuda", index)
        session.run_with_iobinding(binding)
        return torch.from_numpy(binding.copy_outputs_to_cpu()[0])

    return forward


def to_fp16(path, folder):
    """The ONNX model at ``path`` with fp16 weights and ops, by onnxruntime's own converter; its input
    and output stay fp32, as the other backends take and give."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out = folder / "model.fp16.onnx"
    onnx.save(convert_float_to_float16(onnx.load(str(path)), keep_io_types=True), str(out))
    return out


def quantize_static(path, example, folder):
    """The ONNX model at ``path`` quantized by onnxruntime's static quantization: QDQ format, u8
    activations, s8 per-channel weights (7-bit on CPUs without VNNI, whose u8 x s8 products
    saturate 16-bit sums: MobileNet-v3's logits were 48% off without, 15% with, every op quantized),
    scales calibrated (min-max) on generated inputs.

    Only convolutions and matrix products, where the time goes, as PyTorch's X86InductorQuantizer
    does: quantizing every op (LayerNorm, Softmax, Add, ...) put ViT-B/16's logits 47% off, the
    three 6%."""
    from onnxruntime import quantization as q
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self._batches = iter(calibration_inputs(tuple(example.shape[1:])))

        def get_next(self):
            x = next(self._batches, None)
            return None if x is None else {INPUT: x.numpy()}

    # shape inference and graph optimisation first, as onnxruntime's quantization guide asks
    prepared = folder / "model.pre.onnx"
    quant_pre_process(str(path), str(prepared))
    out = folder / "model.int8.onnx"
    q.quantize_static(str(prepared), str(out), Reader(), quant_format=q.QuantFormat.QDQ, per_channel=True,
                      activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                      reduce_range=not cpu.has_any(cpu.INT8_DOT),
                      op_types_to_quantize=["Conv", "MatMul", "Gemm"],
                      extra_options={"OpTypesToExcludeOutputQuantization": _output_ops(prepared)})
    return out


def _output_ops(path) -> list[str]:
    """The op types that write the model's outputs (the head's Gemm). Their outputs stay fp32: a
    quantized output is clipped to the range seen in calibration, which put logits 20% off on
    other inputs; PyTorch's and NNCF's quantizers leave the last layer's output fp32 too."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    outputs = {o.name for o in graph.output}
    return sorted({n.op_type for n in graph.node if outputs.intersection(n.output)})
