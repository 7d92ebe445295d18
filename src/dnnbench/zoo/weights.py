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
def calibrate_norms_(model: nn.Module, inputs) -> nn.Module:
    """Set every BatchNorm's running statistics from one forward pass over ``inputs`` (a batch of at
    least 2), in place; returns ``model`` in eval mode. One pass is enough: in training mode a
    BatchNorm normalises with the batch's own statistics, so further passes over the same inputs
    would see the same activations and record the same statistics (three took 0.1 s more of every
    worker's start for ResNet-18, seconds for the largest models).

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
        m.momentum = None  # the statistics of this pass, not a blend with the reset ones
    model.train()
    try:
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


# -- the user's weights --------------------------------------------------------------------------------

CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")  # where trainers nest the weights


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, read without running any code from it: a ``.safetensors`` file, or a
    PyTorch file (``.pth``, ``.pt``, ``.bin``) read by ``torch.load(weights_only=True)``, which rebuilds
    tensors and plain containers only and refuses any other object before creating it. A training
    checkpoint's state dict (under ``state_dict``, ``model``, ...) is found, and DataParallel's
    ``module.`` prefix dropped. Anything else raises `UserError` naming the problem and the fix."""
    import pickle
    import warnings

    from ..errors import UserError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"weights file {path} does not exist (or is not a file): give the path of a .safetensors, "
                        ".pth or .pt file")
    if not os.access(path, os.R_OK):
        raise UserError(f"weights file {path} cannot be read (permission denied): make it readable")
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(f"{path} is not a readable safetensors file ({_first_line(exc)}): save the weights "
                            "again with safetensors.torch.save_model") from None
    try:
        with warnings.catch_warnings():  # torch's note on the pickle protocol: the error below says it better
            warnings.simplefilter("ignore")
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # weights_only stops at the first object that is not a tensor or a plain container, before making
        # it; which objects the file asks for is read from its opcodes (parsed, never executed)
        foreign = _foreign_globals(path)
        if foreign:
            raise UserError(f"{path} holds Python objects besides tensors (it refers to {', '.join(foreign[:3])}), "
                            "and unpickling them could run code, so dnnbench does not: save only the state dict "
                            "(torch.save(model.state_dict(), path)) or save it as .safetensors") from None
        raise UserError(f"{path} is not a PyTorch weights file (its pickle is corrupt or not PyTorch's): give a "
                        ".safetensors, .pth or .pt file saved from a state dict") from None
    except Exception as exc:  # noqa: BLE001 - bytes that are no weights file fail torch's reader in any way
        # (IndexError, KeyError from its legacy unpickler on random bytes, besides the usual ones)
        raise UserError(f"{path} is not a PyTorch weights file ({type(exc).__name__}: {_first_line(exc)}): give a "
                        ".safetensors, .pth or .pt file saved from a state dict") from None
    return _state_dict_in(loaded, path)


def _state_dict_in(loaded, path: str) -> dict[str, torch.Tensor]:
    from ..errors import UserError

    for _ in range(3):  # a checkpoint nests the state dict a level or two down
        if isinstance(loaded, dict) and loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
            if all(k.startswith("module.") for k in loaded):  # saved from nn.DataParallel
                loaded = {k[len("module."):]: v for k, v in loaded.items()}
            return dict(loaded)
        if not isinstance(loaded, dict):
            break
        inner = next((loaded[k] for k in CHECKPOINT_KEYS if isinstance(loaded.get(k), dict)), None)
        if inner is None:
            break
        loaded = inner
    raise UserError(f"{path} holds no state dict (a mapping of parameter names to tensors)"
                    + (f"; its keys: {', '.join(list(map(str, loaded))[:6])}" if isinstance(loaded, dict) else "")
                    + ": save it with torch.save(model.state_dict(), path)")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


_SAFE_MODULES = ("torch", "collections", "_codecs", "numpy")  # what a state dict's pickle refers to


def _foreign_globals(path: str) -> list[str]:
    """The classes and functions the pickle in ``path`` (or in its zip's ``data.pkl``) refers to beyond
    those of tensors and plain containers, read from its opcodes with pickletools (parsed, never
    run); empty when there are none or it is not a pickle."""
    import io
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                data = archive.read(name) if name else b""
        else:
            with open(path, "rb") as f:
                data = f.read(1 << 26)
    except (OSError, zipfile.BadZipFile, KeyError):
        return []
    found, strings = [], []
    try:
        for op, arg, _ in pickletools.genops(io.BytesIO(data)):
            if isinstance(arg, str):
                strings.append(arg)
            if op.name in ("GLOBAL", "INST"):
                found.append(arg.replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # not a pickle, or a truncated one: what was read so far still counts
        pass
    return [g for g in dict.fromkeys(found) if g.split(".")[0] not in _SAFE_MODULES]


def fit_head_(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Resize ``model``'s classifier layers to the file's: a Linear or 1x1 Conv2d whose weight in
    ``state`` differs only in its number of outputs (a model retrained on other classes) is replaced by
    one of the file's size, in place. Returns the names of the layers resized."""
    resized = []
    for name, module in list(model.named_modules()):
        weight = state.get(f"{name}.weight")
        if weight is None or not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        own = module.weight
        if weight.shape == own.shape or weight.shape[1:] != own.shape[1:]:
            continue
        outputs = weight.shape[0]
        if isinstance(module, nn.Linear):
            new = nn.Linear(module.in_features, outputs, bias=module.bias is not None)
        elif module.kernel_size == (1, 1) and module.groups == 1:
            new = nn.Conv2d(module.in_channels, outputs, 1, stride=module.stride, bias=module.bias is not None)
        else:
            continue
        parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        setattr(parent, name.rpartition(".")[2], new.to(own.device, own.dtype))
        resized.append(f"{name} ({own.shape[0]} -> {outputs} outputs)")
    return resized


def load_user_weights_(model: nn.Module, state: dict[str, torch.Tensor], path: str, name: str) -> list[str]:
    """Load ``state`` (from ``path``) into ``model`` strictly, after `fit_head_`; returns the layers
    resized. A state dict that does not fit raises `UserError` naming the first mismatched keys and shapes."""
    from ..errors import UserError

    resized = fit_head_(model, state)
    own = model.state_dict()
    shared = set()
    try:
        from safetensors.torch import _remove_duplicate_names

        shared = {n for names in _remove_duplicate_names(own, preferred_names=list(state)).values() for n in names}
    except Exception:  # an older safetensors: tied weights must then all be in the file
        pass
    shapes = [f"{k}: file {_shape(state[k])}, model {_shape(v)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    missing = [k for k in own if k not in state and k not in shared and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if shapes or missing or unexpected:
        parts = [f"shapes differ: {'; '.join(shapes[:3])}" + (f" (+{len(shapes) - 3} more)" if len(shapes) > 3 else "")
                 if shapes else "",
                 f"missing from the file: {', '.join(missing[:4])}" + (f" (+{len(missing) - 4} more)" if len(missing) > 4 else "")
                 if missing else "",
                 f"not in the model: {', '.join(unexpected[:4])}" + (f" (+{len(unexpected) - 4} more)" if len(unexpected) > 4 else "")
                 if unexpected else ""]
        raise UserError(f"{path} does not fit {name}: {'; '.join(p for p in parts if p)}: give the weights of this "
                        "architecture (and its input size)")
    loaded = OrderedDict((k, v.to(own[k].dtype) if v.is_floating_point() else v) for k, v in state.items())
    loaded._metadata = getattr(own, "_metadata", None)
    model.load_state_dict(loaded, strict=False)
    return resized


def _shape(t: torch.Tensor) -> str:
    return "x".join(map(str, t.shape)) or "scalar"
