"""Cheap random weights.

No figure dnnbench measures depends on the values of the weights, only on their shapes, so the
libraries' careful initialisations (Kaiming, truncated normal, ...) are wasted work: for VGG-16 they
cost seconds. ``skip_init()`` turns them into no-ops while a model is constructed; ``randomize_()``
then fills every parameter from one small pool of normal values, scaled by fan-in, at memory speed.
The values are random normal, never zeros or denormals (a convolution over denormals runs up to
two orders of magnitude slower on CPU), and scaled so that activations neither vanish nor overflow.

``load_weights()`` loads a safetensors file written by ``safetensors.torch.save_model`` back into a
model the way a user's program loads weights.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections import OrderedDict

import torch
from torch import nn

_POOL_SIZE = 1 << 20
_pool_cache: dict[int, torch.Tensor] = {}

# nn.init functions that draw random numbers; the cheap constant ones (zeros_, ones_, constant_)
# stay, as buffers such as BatchNorm's running statistics depend on them.
_RANDOM_INITS = (
    "uniform_", "normal_", "trunc_normal_", "xavier_uniform_", "xavier_normal_",
    "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_",
)
_RANDOM_TENSOR_METHODS = ("uniform_", "normal_", "log_normal_", "exponential_", "cauchy_", "geometric_")


def _noop(tensor, *args, **kwargs):
    return tensor


@contextlib.contextmanager
def skip_init():
    """Within the block, random initialisers return their tensor untouched (left uninitialised)."""
    saved_init = {name: getattr(nn.init, name) for name in _RANDOM_INITS if hasattr(nn.init, name)}
    saved_tensor = {name: getattr(torch.Tensor, name) for name in _RANDOM_TENSOR_METHODS}
    try:
        for name in saved_init:
            setattr(nn.init, name, _noop)
        for name in saved_tensor:
            setattr(torch.Tensor, name, _noop)
        yield
    finally:
        for name, fn in saved_init.items():
            setattr(nn.init, name, fn)
        for name, fn in saved_tensor.items():
            setattr(torch.Tensor, name, fn)


def _pool(seed: int) -> torch.Tensor:
    if seed not in _pool_cache:
        gen = torch.Generator().manual_seed(seed)
        _pool_cache[seed] = torch.randn(_POOL_SIZE, generator=gen, dtype=torch.float32)
    return _pool_cache[seed]


def _fill_normal_(flat: torch.Tensor, std: float, mean: float, pool: torch.Tensor, start: int) -> None:
    n = flat.numel()
    offset = 0
    while offset < n:
        begin = (start + offset) % _POOL_SIZE
        take = min(n - offset, _POOL_SIZE - begin)
        flat[offset:offset + take].copy_(pool[begin:begin + take])
        offset += take
    flat.mul_(std).add_(mean)


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every floating-point parameter with scaled normal values, in place; returns ``model``.

    Weights of rank >= 2 get std sqrt(2 / fan_in) (He et al.), rank-1 parameters (norm scales,
    biases) get 1 + 0.02 N(0, 1) for norm scales and 0.02 N(0, 1) otherwise. Buffers that were
    left uninitialised or non-finite by ``skip_init`` get the same treatment.
    """
    pool = _pool(seed)
    start = 0
    tensors = [(name, p) for name, p in model.named_parameters()]
    tensors += [(name, b) for name, b in model.named_buffers() if b.is_floating_point() and not torch.isfinite(b).all()]
    for name, tensor in tensors:
        if not tensor.is_floating_point() or tensor.numel() == 0 or tensor.device.type == "meta":
            continue
        flat = tensor.detach().view(-1) if tensor.is_contiguous() else None
        target = flat if flat is not None else torch.empty(tensor.numel(), dtype=tensor.dtype)
        if tensor.dim() >= 2:
            fan_in = math.prod(tensor.shape[1:])
            std, mean = math.sqrt(2.0 / max(fan_in, 1)), 0.0
        elif "running_var" in name:
            std, mean = 0.0, 1.0
        elif name.endswith("weight") or "gamma" in name or "scale" in name:
            std, mean = 0.02, 1.0
        else:
            std, mean = 0.02, 0.0
        _fill_normal_(target, std, mean, pool, start)
        if flat is None:
            tensor.copy_(target.view_as(tensor))
        start = (start + 7919 * tensor.dim() + tensor.numel()) % _POOL_SIZE
    return model


def load_weights(model: nn.Module, path: str | os.PathLike, device: str | torch.device) -> None:
    """Load the safetensors file ``path`` (from ``safetensors.torch.save_model``) into ``model``, its
    tensors read straight onto ``device``; strict: any other missing or unexpected name is a RuntimeError.

    ``safetensors.torch.load_model`` loses the state dict's ``_metadata``, the per-module versions that
    some modules' loading needs (torchvision's MNASNet refuses a state dict without its version), so the
    model's own metadata goes along here. Like ``save_model``/``load_model``, a tensor shared under several
    names (tied weights) is in the file once: the names left out are exactly those that
    ``safetensors.torch._remove_duplicate_names`` drops, and loading the kept one fills them all.
    """
    from safetensors.torch import _remove_duplicate_names, load_file

    loaded = load_file(os.fspath(path), device=str(device))
    own = model.state_dict()
    state = OrderedDict(loaded)
    state._metadata = getattr(own, "_metadata", None)  # the versions nn.Module._load_from_state_dict reads
    shared = {name for names in _remove_duplicate_names(own, preferred_names=list(loaded)).values() for name in names}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [name for name in missing if name not in shared]
    if missing or unexpected:
        raise RuntimeError(f"{path} does not fit {type(model).__name__}: missing {', '.join(missing) or 'none'}; "
                           f"unexpected {', '.join(unexpected) or 'none'}")


@torch.no_grad()
def calibrate_norms_(model: nn.Module, inputs, passes: int = 3) -> nn.Module:
    """Set every BatchNorm's running statistics from ``passes`` forward passes over ``inputs`` (a batch
    of at least 2), in place; returns ``model`` in eval mode.

    Random weights with running statistics at 0 and 1 do not normalise anything: a deep net's
    activations grow layer by layer to 1e8..1e12, finite in fp32 but past fp16's range, and they make
    int8 calibration and any comparison of logits meaningless. Statistics measured on the inputs (as
    training leaves them) keep every layer's activations near unit scale, for every precision. The
    arithmetic per pass is the same either way."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return model.eval()
    saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone()) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the passes
    model.train()
    try:
        for _ in range(passes):
            model(inputs)
    except Exception:  # a model that cannot run in training mode keeps the statistics it had
        for m, (_, mean, var) in zip(norms, saved, strict=True):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
    finally:
        for m, (momentum, _, _) in zip(norms, saved, strict=True):
            m.momentum = momentum
        model.eval()
    return model
