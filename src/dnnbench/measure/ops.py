"""Operation counting on shapes.

MACs: multiply-accumulates of one forward pass. Counted: convolutions (grouped, depthwise, dilated,
transposed), matrix products (``mm``, ``addmm``, ``bmm``, ``baddbmm``, ``mv``, ``dot``: which is
what ``nn.Linear``, ``torch.matmul`` and ``einsum`` become), and attention: every fused
scaled-dot-product-attention kernel, and the fused fast-path kernels that
``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer`` take in eval mode (PyTorch's own
``FlopCounterMode`` misses the last two and undercounts ViT-B/16 by a third). Biases, norms,
activations, pooling and element-wise adds are not MACs; FLOPs = 2 x MACs.

The count is taken by a ``TorchDispatchMode`` that sees every aten operator after autograd and
composite decomposition, so functional code, nested modules and shared modules are counted
exactly as they execute. The model runs on the meta device: shapes only, no arithmetic and no
memory, so ViT-H/14 or RegNet-Y-128GF are counted in well under a second.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten


def _numel(shape) -> int:
    return math.prod(int(s) for s in shape)


def _conv_macs(args, out) -> int:
    x, w = args[0], args[1]
    transposed = bool(args[6]) if len(args) > 6 else False
    if transposed:
        # weight is (C_in, C_out / groups, k...): every input element meets C_out/groups * k weights
        return _numel(x.shape) * _numel(w.shape[1:])
    # weight is (C_out, C_in / groups, k...): every output element is C_in/groups * k MACs
    return _numel(out.shape) * _numel(w.shape[1:])


def _mm_macs(a, b) -> int:
    return int(a.shape[0]) * int(a.shape[1]) * int(b.shape[1])


def _bmm_macs(a, b) -> int:
    return int(a.shape[0]) * int(a.shape[1]) * int(a.shape[2]) * int(b.shape[2])


def _sdpa_macs_bhle(q, k, v) -> int:
    """Attention in (batch..., heads, length, dim) layout: Q K^T then P V."""
    batch = _numel(q.shape[:-2])
    lq, e = int(q.shape[-2]), int(q.shape[-1])
    lk, ev = int(k.shape[-2]), int(v.shape[-1])
    return batch * lq * lk * (e + ev)


def _sdpa_macs_blhe(q, k, v) -> int:
    """Attention in (batch, length, heads, dim) layout (the flash / efficient forward kernels)."""
    b, lq, h, e = (int(s) for s in q.shape)
    lk, ev = int(k.shape[1]), int(v.shape[-1])
    return b * h * lq * lk * (e + ev)


def _mha_macs(args) -> int:
    """``aten._native_multi_head_attention``: input projections, attention, output projection."""
    query, key, embed_dim = args[0], args[1], int(args[3])
    lq = _numel(query.shape[:-1])  # batch * target length
    lk = _numel(key.shape[:-1])
    lq_per_batch, lk_per_batch = int(query.shape[-2]), int(key.shape[-2])
    batch = _numel(query.shape[:-2])
    projections = lq * embed_dim * embed_dim + 2 * lk * embed_dim * embed_dim
    attention = batch * lq_per_batch * lk_per_batch * embed_dim * 2
    out_projection = lq * embed_dim * embed_dim
    return projections + attention + out_projection


def _encoder_layer_macs(args) -> int:
    """``aten._transformer_encoder_layer_fwd`` (``nn.TransformerEncoderLayer``'s fast path):
    self-attention as above plus the two feed-forward linear layers."""
    src, embed_dim = args[0], int(args[1])
    ffn_weight_1 = args[14]
    tokens = _numel(src.shape[:-1])
    attention = _mha_macs((src, src, src, embed_dim))
    return attention + 2 * tokens * embed_dim * int(ffn_weight_1.shape[0])


def _op_macs(func, args, out) -> tuple[str, int] | None:
    """(category, MACs) of one aten call, or None when it performs no multiply-accumulates."""
    packet = func.overloadpacket
    if packet in (aten.convolution, aten._convolution):
        return "conv", _conv_macs(args, out)
    if packet is aten.mm:
        return "matmul", _mm_macs(args[0], args[1])
    if packet in (aten.addmm, aten._addmm_activation):
        return "matmul", _mm_macs(args[1], args[2])
    if packet is aten.bmm:
        return "matmul", _bmm_macs(args[0], args[1])
    if packet is aten.baddbmm:
        return "matmul", _bmm_macs(args[1], args[2])
    if packet is aten.mv:
        return "matmul", _numel(args[0].shape)
    if packet is aten.dot:
        return "matmul", int(args[0].shape[0])
    if packet in (
        aten._scaled_dot_product_flash_attention,
        aten._scaled_dot_product_flash_attention_for_cpu,
        aten._scaled_dot_product_efficient_attention,
        aten._scaled_dot_product_cudnn_attention,
        aten._scaled_dot_product_fused_attention_overrideable,
    ):
        return "attention", _sdpa_macs_bhle(args[0], args[1], args[2])
    if packet in (aten._flash_attention_forward, aten._efficient_attention_forward):
        return "attention", _sdpa_macs_blhe(args[0], args[1], args[2])
    if packet is aten._native_multi_head_attention:
        return "attention", _mha_macs(args)
    if packet is aten._transformer_encoder_layer_fwd:
        return "attention", _encoder_layer_macs(args)
    return None


def _extra_ops(func, args, out) -> tuple[str, int] | None:
    """Element-wise work that some counters add to MACs (fvcore, used for timm's published
    ``infer_gmacs``): normalisation, 2 per element for BatchNorm with a scale and shift (eval), 5 for
    LayerNorm / GroupNorm with affine; average pooling to one value, one per input element;
    upsampling, 1 (nearest) or 4 (bilinear) per output element. Never part of ``macs``."""
    name = func.overloadpacket.__name__
    if "backward" in name:
        return None
    if "batch_norm" in name and name != "batch_norm_update_stats":
        weight = args[1] if len(args) > 1 else None
        return "norm", _numel(args[0].shape) * (2 if weight is not None else 1)
    if name in ("native_layer_norm", "native_group_norm"):
        weight = args[2] if name == "native_layer_norm" else args[1]
        return "norm", _numel(args[0].shape) * (5 if weight is not None else 4)
    if name in ("_adaptive_avg_pool2d", "adaptive_avg_pool2d"):
        return "pool", _numel(args[0].shape)
    if name == "mean" and len(args) > 1 and args[0].dim() == 4 and sorted(int(d) % 4 for d in args[1]) == [2, 3]:
        return "pool", _numel(args[0].shape)  # adaptive average pooling to 1x1 runs as a mean
    if name.startswith("upsample_nearest"):
        return "upsample", _numel(out.shape)
    if name.startswith("upsample_bilinear"):
        return "upsample", 4 * _numel(out.shape)
    return None


@dataclass
class OpCount:
    """MACs of everything run inside the counter, by category (conv, matmul, attention), and the
    element-wise extras (norm, pool, upsample) kept apart."""

    by_category: Counter = field(default_factory=Counter)
    extras: Counter = field(default_factory=Counter)

    @property
    def macs(self) -> int:
        return sum(self.by_category.values())

    @property
    def fvcore_macs(self) -> int:
        """MACs in fvcore's convention (timm's ``infer_gmacs``): MACs plus norm, pool and upsample work."""
        return self.macs + sum(self.extras.values())


class MacCounter(TorchDispatchMode):
    """Counts MACs of every aten operator executed inside it (any device, meta included)."""

    def __init__(self):
        super().__init__()
        self.count = OpCount()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        # Under inference_mode, composite operators (linear, conv2d, layer_norm,
        # scaled_dot_product_attention, einsum) reach this mode whole; run their decomposition
        # inside the mode so that what they are made of is counted, once, by the rules below.
        if func.namespace == "aten" and torch._C._dispatch_has_kernel_for_dispatch_key(func.name(),
                                                                                       "CompositeImplicitAutograd"):
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = self.call(func, args, kwargs)
        found = _op_macs(func, args, out)
        if found is not None:
            self.count.by_category[found[0]] += found[1]
        else:
            extra = _extra_ops(func, args, out)
            if extra is not None:
                self.count.extras[extra[0]] += extra[1]
        self.executed(func, args, kwargs, out, found)
        return out

    def call(self, func, args, kwargs):
        """Runs one operator that runs whole: a hook for counters that time it (`measure.kernels.KernelClock`)."""
        return func(*args, **kwargs)

    def executed(self, func, args, kwargs, out, macs: tuple[str, int] | None) -> None:
        """Called for every aten operator that runs whole (not decomposed), with its (category, MACs)
        or None: a hook for counters that see more than MACs (`measure.kernels.KernelRecorder`)."""


def count_macs(model: torch.nn.Module, example: torch.Tensor) -> OpCount:
    """MACs of ``model(example)``, counted on whatever device ``model`` and ``example`` live on.

    On the meta device nothing is computed: ``count_macs(resnet50_on_meta, meta_input)`` returns
    4.089 GMACs per image at 224 px, torchvision's published ``_ops``.
    """
    with torch.no_grad(), MacCounter() as counter:
        model(example)
    return counter.count
