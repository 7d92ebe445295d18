"""LiteRT (formerly TensorFlow Lite) on the CPU: the model converted by litert-torch at each batch size
into the .tflite file a device ships, run by LiteRT's interpreter with its XNNPACK delegate. int8 by
litert-torch's PT2E quantizer (static, symmetric per-channel weights), calibrated like the other
backends."""

from __future__ import annotations

from .base import Backend, exporting, is_cuda, program_per_batch, require
from .correctness import quantized_pt2e

EXTRA = "litert"


class LiteRT(Backend):
    name = "litert"

    needs = ("ai_edge_litert", "litert_torch")  # the interpreter first: the converter imports it
    extra = EXTRA

    def check(self, precision: str, device: str) -> str | None:
        require("ai_edge_litert", EXTRA)
        if is_cuda(device):
            raise self.refuse(precision, device, "this backend runs LiteRT's CPU interpreter (XNNPACK): "
                              "use --device cpu")
        if precision in ("bf16", "fp16"):
            raise self.refuse(precision, device, f"litert-torch converts fp32 and int8 models; {precision} "
                              "runs on phones' GPU delegates, not here: use fp32 or int8")
        return None

    def _prepare(self, model, example, precision, device, threads, folder):
        import torch

        quantizer, graph = quantized(model, example) if precision == "int8" else (None, model)

        def write(path, shape):
            converted(graph, torch.zeros(shape, dtype=example.dtype), quantizer).export(str(path))

        return program_per_batch(folder, "tflite", write, lambda path: interpreted(path, threads), example.shape)

    def restart(self, files, shape, precision, device, threads, cache, architecture):
        return interpreted(files[0], threads)


def interpreted(path, threads: int):
    """The step of the .tflite model at ``path``, run by LiteRT's interpreter on ``threads``."""
    import torch
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    [given], [taken] = interpreter.get_input_details(), interpreter.get_output_details()
    to_input, from_output = codec(given), codec(taken)

    def step(x):
        interpreter.set_tensor(given["index"], to_input(x.detach().cpu().contiguous().numpy()))
        interpreter.invoke()
        # a copy: the interpreter overwrites its output tensor at the next pass
        return torch.from_numpy(from_output(interpreter.get_tensor(taken["index"]).copy()))

    return step


def codec(detail: dict):
    """How a tensor of the model's fp32 crosses this input or output: unchanged for a float one; for an
    integer one (int8 models take and give int8, as on a device) quantized on the way in, or
    dequantized on the way out, with the tensor's own scale and zero point."""
    import numpy as np

    if detail["dtype"] == np.float32:
        return lambda a: a
    scale, zero = detail["quantization"]
    kind = np.iinfo(detail["dtype"])
    def convert(a):
        if a.dtype == np.float32:  # an input: fp32 to the model's integers
            return np.clip(np.round(a / scale) + zero, kind.min, kind.max).astype(detail["dtype"])
        return ((a.astype(np.float32) - zero) * scale).astype(np.float32)  # an output: back to fp32

    return convert


def converted(model, example, quantizer=None):
    """``model`` converted at ``example``'s shape (static: the shape a deployment ships) by
    litert-torch; ``.export(path)`` writes the .tflite file."""
    import litert_torch
    import torch

    config = None
    if quantizer is not None:
        from litert_torch.quantize.quant_config import QuantConfig

        config = QuantConfig(pt2e_quantizer=quantizer)
    with torch.no_grad(), exporting("litert"):
        return litert_torch.convert(model, (example,), quant_config=config)


def quantized(model, example):
    """(the quantizer, ``model`` quantized for LiteRT): symmetric per-channel int8 weights, static
    int8 activations; the weights' quantize nodes kept for litert-torch's converter."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    return quantizer, quantized_pt2e(model, example, quantizer, fold_quantize=False)
