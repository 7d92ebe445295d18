"""How far a backend's logits are from the reference (eager fp32), and the inputs that calibrate the
quantizers."""

from __future__ import annotations

import contextlib

from .base import exporting

CALIBRATION_BATCHES = 8  # of CALIBRATION_BATCH images: 16 in all, a few seconds of a large model
CALIBRATION_BATCH = 2


_real: list | None = None  # the batches of real images that `calibrating_on` gives the quantizers


@contextlib.contextmanager
def calibrating_on(batches: list):
    """Within the block, the quantizers calibrate on ``batches`` (preprocessed real images, as a
    deployment calibrates on its own data) instead of generated ones: what `dnnbench eval` does."""
    global _real
    saved, _real = _real, list(batches)
    try:
        yield
    finally:
        _real = saved


def calibration_inputs(shape, count: int = CALIBRATION_BATCHES, batch: int = CALIBRATION_BATCH,
                       seed: int = 0, device: str = "cpu") -> list:
    """``count`` batches of ``batch`` images of ``shape`` (C, H, W; an int n means 3 x n x n), random
    normal and seeded. The worker times the model on the same distribution, so the quantizers'
    scales fit what is measured; accuracy on real images is not what these backends are judged on
    (an evaluation gives real ones: `calibrating_on`)."""
    import torch

    if _real is not None:
        return [x.to(device) for x in _real]

    if isinstance(shape, int):
        shape = (3, shape, shape)
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, *shape, generator=generator).to(device) for _ in range(count)]



def quantized_pt2e(model, example, quantizer, strict: bool = False, fold_quantize: bool = True):
    """``model`` quantized to int8 by PT2E for ``quantizer``'s runtime: exported with a dynamic batch
    axis (batch 2 in the trace: an example of batch 1 would fix the axis to 1), observers placed,
    calibrated on `calibration_inputs` of ``example``'s image shape, converted; a graph module to
    export, lower or convert at each batch size. ``strict``: dynamo tracing (see compile.py);
    ``fold_quantize=False`` keeps the weights' quantize nodes, which litert-torch converts."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    inputs = calibration_inputs(tuple(example.shape[1:]), device=str(example.device))
    batch = {0: torch.export.Dim("batch", min=1)}
    with torch.no_grad(), exporting(f"{type(quantizer).__name__}'s int8"):
        captured = torch.export.export(model, (inputs[0],), dynamic_shapes=(batch,), strict=strict).module()
        observed = prepare_pt2e(captured, quantizer)
        for x in inputs:
            observed(x)
        return convert_pt2e(observed, fold_quantize=fold_quantize)

# How far apart eager fp32's top two classes must be, over its largest |logit|, for an image to judge
# a setup at a precision: closer classes are a near-tie that the precision's own rounding may decide
# either way, and on random weights most images are near-ties. The envelopes, measured on random deep
# nets (resnet50, mobilenet_v2, vit_b_32; CPU and H200): fp32 backends up to 3e-5, TF32 convolutions
# on CUDA up to 1e-2; bf16 up to 0.15; fp16 up to 0.02; int8 up to 0.3.
DECISIVE_MARGIN = {"fp32": 0.01, "bf16": 0.15, "fp16": 0.05, "int8": 0.3}


def compare_outputs(reference, other, precision: str | None = None) -> dict:
    """``max_rel_error``: the largest |reference - other| over the largest |reference|, over the whole
    batch (0.01 = off by 1% of the largest logit; inf where either holds a NaN); ``top1_agreement``:
    the share of images whose arg-max class agrees, 0..1, over the images that can judge
    ``precision``: those whose reference top two classes are further apart than its
    ``DECISIVE_MARGIN`` (every image where ``precision`` is None); None where no image can."""
    import torch

    a = reference.detach().float().cpu()
    b = other.detach().float().cpu()
    if a.shape != b.shape:
        raise ValueError(f"outputs of shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be compared")
    scale = a.abs().max().item()
    diff = (a - b).abs().max().item()
    rel = diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))
    if rel != rel:  # a NaN in either: as far off as it gets (and JSON has no NaN)
        rel = float("inf")
    rows_a, rows_b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    agree = rows_a.argmax(dim=1) == rows_b.argmax(dim=1)
    decisive = torch.ones_like(agree)
    if precision is not None and rows_a.shape[1] > 1:
        top2 = rows_a.topk(2, dim=1).values
        decisive = (top2[:, 0] - top2[:, 1]) > DECISIVE_MARGIN[precision] * scale
    judged = int(decisive.sum())
    return {"max_rel_error": rel,
            "top1_agreement": (agree & decisive).sum().item() / judged if judged else None}
