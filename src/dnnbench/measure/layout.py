"""The layout reorders a blocked-layout runtime runs between a model's kernels: ONNX Runtime's NCHWc.

On the CPU, ONNX Runtime runs a convolution in a blocked layout (channels in blocks of 8 with AVX2, 16
with AVX-512), and keeps a chain of convolutions, pools, activations, residual additions and aligned
concatenations in it. Where a tensor leaves the chain (a squeeze-and-excitation's mean and gate
product, a layer norm, a channel shuffle's reshape) it runs a ReorderOutput, and a ReorderInput where
a plain tensor comes back: 6% to 15% of the node time of squeeze-and-excitation models, ShuffleNet,
GhostNet and ConvNeXt. A one-operator graph's reorders are not the model's, so the runtime's kernels
(`backends.runtime_kernels`) leave them out, and the reorders the model runs are counted here.

`Flow` follows the forward pass by tensor identity (which operator wrote each tensor an operator
reads), and `derive` applies the NCHWc transformer's rules to it (onnxruntime's nchwc_transformer.cc;
on 36 models the reorders derived were those of the runtime's own optimised graph for 35, and the
36th differs in one reorder's layout). A reorder is keyed as a kernel (`key`), timed as one.
"""

from __future__ import annotations

import collections
import json

import torch

BLOCKS = (8, 16)  # the block sizes of ONNX Runtime's NCHWc layout: AVX2 and AVX-512
REORDER_INPUT, REORDER_OUTPUT = "nchwc.ReorderInput", "nchwc.ReorderOutput"
INPUT, CONSTANT = -2, -1  # writers of a tensor no operator of the pass wrote: the model's input, a weight
# a convolution's channels the runtime pads to its block (onnxruntime 1.32: 116 and 20 channels are
# padded, 10 are not)
CHANNEL_ALIGNMENT = 4
# what keeps a blocked tensor blocked: element-wise activations (fused into the layer before or run on
# the blocked tensor), an inference batch norm (folded or run as a per-channel product), copies
_KEEPS = {"relu", "relu_", "hardtanh", "hardtanh_", "silu", "silu_", "sigmoid", "sigmoid_", "tanh", "tanh_",
          "gelu", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "detach", "alias", "clone",
          "_native_batch_norm_legit_no_training", "native_batch_norm"}
_POOLS = {"max_pool2d_with_indices", "avg_pool2d"}
_BINARY = {"add", "add_", "mul", "mul_"}


class Flow:
    """Each operator of a forward pass, in order: (name, the entries that wrote its tensor arguments
    (`INPUT`, `CONSTANT` for others), its output's shape, its first three arguments' shapes, a
    permutation's order, a convolution's groups)."""

    def __init__(self):
        from torch.utils.weak import WeakIdKeyDictionary

        self.entries: list[tuple] = []
        self.writer = WeakIdKeyDictionary()

    def given(self, example: torch.Tensor) -> None:
        self.writer[example] = INPUT

    def ran(self, func, args, out) -> None:
        name = func.overloadpacket.__name__
        read: list[int] = []

        def walk(value):
            if isinstance(value, torch.Tensor):
                read.append(self.writer.get(value, CONSTANT))
            elif isinstance(value, (list, tuple)):
                for v in value:
                    walk(v)

        walk(args)
        first = out[0] if isinstance(out, (list, tuple)) and out else out
        self.entries.append((name, read, list(first.shape) if isinstance(first, torch.Tensor) else None,
                             [list(a.shape) if isinstance(a, torch.Tensor) else None for a in args[:3]],
                             [int(d) for d in args[1]] if name == "permute" else None,
                             int(args[8]) if name == "convolution" and len(args) > 8 else 1))
        for o in out if isinstance(out, (list, tuple)) else [out]:
            if isinstance(o, torch.Tensor):
                self.writer[o] = len(self.entries) - 1

    def reorders(self) -> dict[str, dict[str, int]]:
        """{block size: {reorder key: calls}} for each of `BLOCKS`."""
        return {str(block): dict(collections.Counter(key(*r) for r in derive(self.entries, block)))
                for block in BLOCKS}


def key(kind: str, shape: tuple, channels_last: int) -> str:
    """A reorder's kernel key, as an eager kernel's: [operator, [its plain tensor], {"channels_last"}]."""
    return json.dumps([REORDER_INPUT if kind == "in" else REORDER_OUTPUT, [{"T": list(shape), "d": "float32"}],
                       {"channels_last": int(channels_last)}], separators=(",", ":"))


def _convolution_blocks(weight: list, groups: int, block: int) -> tuple[bool, bool]:
    """(runs blocked, reorders its input) of a 2-d convolution of ``weight`` [O, I/groups, kh, kw]."""
    out, per_group = weight[0], weight[1]
    if groups > 1:
        if out % CHANNEL_ALIGNMENT:
            return False, False
        depthwise = per_group == 1 and out == groups
        return depthwise or not (per_group % block or out % groups or (out // groups) % block), True
    if per_group < block:
        return True, False  # reads the plain layout as it is (a model's first layer): no reorder
    return per_group % CHANNEL_ALIGNMENT == 0, True


def derive(entries: list, block: int) -> list[tuple[str, tuple, int]]:
    """The reorders ONNX Runtime's NCHWc transformer inserts in the pass ``entries`` (`Flow`) holds:
    [("in" | "out", the plain tensor's shape, channels last)], one per tensor however many read it."""
    readers = collections.Counter(j for entry in entries for j in entry[1])
    blocked: dict[int, int] = {}  # entry -> its channels, where its output is blocked
    constant, leaving, reordered, nhwc, found = set(), set(), set(), {}, []

    def leaves(j):
        if j in blocked:
            leaving.add(j)

    def reorder_input(source, shape):
        if source not in blocked and source not in reordered:
            reordered.add(source)  # a transpose from channels-last before it fuses into the reorder
            found.append(("in", tuple(entries[nhwc[source]][2]), 1) if source in nhwc else ("in", tuple(shape), 0))

    for i, (name, read, shape, shapes, order, groups) in enumerate(entries):
        source = read[0] if read else CONSTANT
        if all(j == CONSTANT or j in constant for j in read):
            constant.add(i)  # a weight's view, a constant's product
            continue
        if name == "convolution" and len(shapes[1] or []) == 4:
            runs, reorders = _convolution_blocks(shapes[1], groups, block)
            if runs:
                if reorders:
                    reorder_input(source, shapes[0])
                else:
                    leaves(source)
                blocked[i] = shapes[1][0]
                continue
        elif name in _POOLS and len(shapes[0] or []) == 4 and shapes[0][1] % block == 0:
            reorder_input(source, shapes[0])
            blocked[i] = shapes[0][1]
            continue
        elif name in _KEEPS and source in blocked:
            blocked[i] = blocked[source]
            continue
        elif name in _BINARY and len(read) == 2:
            on = [j for j in read if j in blocked]
            alike = len(on) == 2 and shapes[0] == shapes[1]
            # a per-channel scale or bias after a layer folds into its weights
            folds = len(on) == 1 and any(j == CONSTANT or j in constant for j in read) \
                and entries[on[0]][0] == "convolution"
            if alike or folds:
                blocked[i] = blocked[on[0]]
                continue
        elif name == "cat" and read and len(shape or []) == 4 \
                and all(j in blocked and blocked[j] % block == 0 for j in read):
            blocked[i] = sum(blocked[j] for j in read)
            continue
        elif name == "permute" and source in blocked and order == [0, 2, 3, 1]:
            found.append(("out", tuple(shape), 1))  # the transpose to channels-last is the reorder itself
            continue
        elif name == "permute" and source not in blocked and order == [0, 3, 1, 2] and readers[i] == 1:
            nhwc[i] = source
        for j in read:
            leaves(j)
    leaves(len(entries) - 1)  # the model's output
    return found + [("out", tuple(entries[j][2]), 0) for j in sorted(leaving)]
