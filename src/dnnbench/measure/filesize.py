"""File size: bytes of the model's state dict serialised as safetensors, computed from shapes.

A safetensors file is an 8-byte little-endian header length, a JSON header padded with spaces to a
multiple of 8 bytes (``{"name":{"dtype":"F32","shape":[64,3,7,7],"data_offsets":[0,37632]},...}``),
then the raw tensor bytes. The header's length depends only on names, dtypes, shapes and offsets,
so the exact size is known without writing the file, on the meta device too. Tensors shared between
modules are stored once, under one name, as ``safetensors.torch.save_model`` does.
"""

from __future__ import annotations

import json

import torch
from torch import nn

_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}
# safetensors lays tensors out by dtype, in the reverse of this order (its Rust enum), then by name;
# the order changes the offsets written in the header, hence its length.
_DTYPE_ORDER = ["BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"]


def _unique_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The state dict with each shared tensor kept once, under the first of its names in sort order,
    and the names left out, each mapped to the name kept (``save_model`` writes it as metadata)."""
    owner: dict[str, int] = {}
    for name, tensor in model.named_parameters(remove_duplicate=False):
        owner[name] = id(tensor)
    for name, tensor in model.named_buffers(remove_duplicate=False):
        owner[name] = id(tensor)
    state = model.state_dict(keep_vars=True)
    kept: dict[int, str] = {}
    removed: dict[str, str] = {}
    for name in sorted(state):
        key = owner.get(name, id(state[name]))
        if key in kept:
            removed[name] = kept[key]
        else:
            kept[key] = name
    return {name: state[name] for name in sorted(kept.values())}, removed


def safetensors_size(model: nn.Module) -> int:
    """Bytes of ``model``'s weights saved by ``safetensors.torch.save_model`` (metadata only for tied weights)."""
    state, removed = _unique_state(model)
    header: dict = {"__metadata__": removed} if removed else {}
    offset = 0
    order = sorted(state, key=lambda n: (-_DTYPE_ORDER.index(_DTYPES[state[n].dtype]), n))
    for name in order:
        tensor = state[name]
        nbytes = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": _DTYPES[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    padded = len(text) + (-len(text)) % 8
    return 8 + padded + offset
