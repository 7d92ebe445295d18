"""The kernels a model runs, and what each one costs on this machine.

A model's *profile* is the list of aten operators one forward pass executes (on the meta device:
shapes only), each with its arguments' shapes: the kernels the runtime actually runs, as nn-Meter
(MobiSys 2021) splits a model before predicting it. A kernel is keyed by its operator and arguments
(tensors by shape, dtype and, where not contiguous, strides), so the same convolution in two models
is one kernel, timed once. From the profile come the model's *features*, each a sum over its kernels:

- ``macs_dense_conv``, ``macs_grouped_conv`` (groups > 1: depthwise and grouped), ``macs_matmul``
  (linear layers: mm, addmm), ``macs_attention`` (fused attention kernels, and batched products of two
  activations, bmm: Q K^T and P V where attention is not fused): multiply-accumulates;
- ``activations``: elements written by every kernel that writes (views excluded), a proxy for the
  memory traffic that makes small and depthwise models slower than their operations say;
- ``bytes``: bytes read and written by every kernel, weights included;
- ``kernels``: kernel calls, each of which pays a dispatch cost whatever its size.

Each layer call's epilogue (`measure.profile`) is followed by tensor identity (`_Epilogues`): the
element-wise operators that take the layer's output, or what they made of it, as their input.

`replay` turns a recorded kernel back into a call on random tensors of its shapes on the CPU, and
`time_call` times it (the median of repeated calls after one warm call).
"""

from __future__ import annotations

import functools
import json
import math
import random
import statistics
import time
from collections import Counter

import torch

from .ops import MacCounter
from .profile import KernelSpec, Profile

# operators that write nothing (aliases and bookkeeping): not kernels
_SILENT = {"detach", "alias", "lift_fresh", "lift_fresh_copy", "_to_copy_meta", "empty", "empty_strided",
           "empty_like", "set_", "resize_", "_local_scalar_dense"}


class _Unreplayable(Exception):
    pass


# the layers a runtime fuses an epilogue into; what folds into their weights (an inference batch norm)
_LAYERS = {"convolution", "addmm", "mm"}
_FOLDED = {"_native_batch_norm_legit_no_training", "native_batch_norm"}
_ACTIVATIONS = {"relu", "silu", "hardswish", "hardsigmoid", "sigmoid"}  # their tags are their names


def _tag(name: str, args, kwargs) -> str | None:
    """The epilogue tag (`profile.EPILOGUE_TAGS`) of the aten operator ``name`` called so, or None."""
    name = name.removesuffix("_")
    if name in _ACTIVATIONS:
        return name
    if name == "gelu":
        return "gelu_tanh" if kwargs.get("approximate", args[1] if len(args) > 1 else "none") == "tanh" else "gelu"
    if name == "hardtanh" and [float(a) for a in args[1:3]] == [0.0, 6.0]:
        return "relu6"
    if name == "add" and len(args) >= 2 and all(isinstance(a, torch.Tensor) for a in args[:2]) \
            and args[0].shape == args[1].shape and kwargs.get("alpha", 1) == 1:
        return "add"
    return None


class _Epilogues:
    """Each layer call's epilogue, followed by tensor identity: a chain per layer call ([key, tags, open])
    and its *head*, the tensor that holds the chain's result so far (and views of it). An element-wise
    operator of `_tag` on a head extends that chain (an addition of two heads, the later layer's: a
    runtime fuses it into the layer computed last); a normalisation that folds passes it on. Any other
    operator that reads a head closes its chain: the layer's result is then written out for it, and a
    residual addition that comes later fuses into the layer of its other operand (in ConvNeXt, a stage's
    first input is read by its first block and added at its end)."""

    def __init__(self):
        from torch.utils.weak import WeakIdKeyDictionary

        self.chains: list[list] = []
        self.heads = WeakIdKeyDictionary()  # tensor -> (chain index, its tags' length when it became head)

    def _chain(self, value) -> int | None:
        found = self.heads.get(value) if isinstance(value, torch.Tensor) else None
        if found is None:
            return None
        _, tags, is_open = self.chains[found[0]]
        return found[0] if is_open and len(tags) == found[1] else None

    def _head(self, out, chain: int) -> None:
        if isinstance(out, torch.Tensor):
            self.heads[out] = (chain, len(self.chains[chain][1]))

    def _close(self, values) -> None:
        for value in values:
            if isinstance(value, (list, tuple)):
                self._close(value)
            elif (chain := self._chain(value)) is not None:
                self.chains[chain][2] = False

    def viewed(self, func, args, out) -> None:
        if func.is_view and args and (chain := self._chain(args[0])) is not None:
            self._head(out, chain)

    def ran(self, name: str, key: str, args, kwargs, out) -> None:
        if name in _FOLDED and (chain := self._chain(args[0] if args else None)) is not None:
            self._head(out[0] if isinstance(out, (list, tuple)) else out, chain)
            return
        tag = _tag(name, args, kwargs)
        chains = [c for c in (self._chain(a) for a in (args[:2] if tag == "add" else args[:1])) if c is not None]
        self._close(list(args) + list(kwargs.values()))
        if name in _LAYERS:
            self.chains.append([key, [], True])
            self._head(out, len(self.chains) - 1)
        elif tag is not None and chains:
            chain = max(chains)
            self.chains[chain][1].append(tag)
            self.chains[chain][2] = True
            self._head(out, chain)

    def counts(self) -> dict[str, Counter]:
        """{layer key: Counter of its calls by epilogue (tags joined by commas)}, calls with one."""
        out: dict[str, Counter] = {}
        for key, tags, _ in self.chains:
            if tags:
                out.setdefault(key, Counter())[",".join(tags)] += 1
        return out


def _encode(value):
    """An argument as JSON: tensors by shape and dtype (and strides where not contiguous)."""
    if isinstance(value, torch.Tensor):
        out = {"T": list(value.shape), "d": str(value.dtype).removeprefix("torch.")}
        if not value.is_contiguous():
            out["s"] = list(value.stride())
        return out
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"f": repr(value)}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {"device": "cpu"}
    if isinstance(value, torch.memory_format):
        return {"memory_format": str(value).removeprefix("torch.")}
    if isinstance(value, torch.layout):
        return {"layout": str(value).removeprefix("torch.")}
    raise _Unreplayable(type(value).__name__)


def _bytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (list, tuple)):
        return sum(_bytes(v) for v in value)
    return 0


def _elements(out) -> int:
    if isinstance(out, torch.Tensor):
        return out.numel()
    if isinstance(out, (list, tuple)):
        return sum(_elements(o) for o in out)
    return 0


def _kind(func, args, macs) -> str:
    if macs is None:
        return "other"
    category = macs[0]
    if category == "conv":
        groups = int(args[8]) if len(args) > 8 else 1
        return "grouped_conv" if groups > 1 else "dense_conv"
    if func.overloadpacket in (torch.ops.aten.bmm, torch.ops.aten.baddbmm):
        return "attention"  # a batched product of two activations (Q K^T, P V), not a layer's weights
    return category


class KernelRecorder(MacCounter):
    """A `MacCounter` that also records every kernel it sees, in ``profile``."""

    def __init__(self):
        super().__init__()
        self._profile = Profile()
        self._epilogues = _Epilogues()

    @property
    def profile(self) -> Profile:
        self._profile.then = self._epilogues.counts()
        return self._profile

    def executed(self, func, args, kwargs, out, macs) -> None:
        name = func.overloadpacket.__name__
        if func.is_view or name in _SILENT or not _elements(out):
            self._epilogues.viewed(func, args, out)
            return
        try:
            key = json.dumps([str(func), _encode(args), {k: _encode(v) for k, v in kwargs.items()}],
                             separators=(",", ":"))
        except _Unreplayable as exc:  # still one key per distinct call, from the arguments' text
            key = json.dumps([str(func), f"unreplayable {exc}", _loose(args), _loose(kwargs)], separators=(",", ":"))
        if key not in self._profile.specs:
            self._profile.specs[key] = KernelSpec(key, _kind(func, args, macs), int(macs[1]) if macs else 0,
                                                  _elements(out), _bytes(args) + _bytes(kwargs) + _bytes(out))
        self._profile.calls[key] += 1
        self._epilogues.ran(name, key, args, kwargs, out)
        self.seen(key)

    def seen(self, key: str) -> None:
        """Called once per recorded kernel call, after it ran: a hook for `KernelClock`."""


class KernelClock(KernelRecorder):
    """A `KernelRecorder` over real tensors that also times each kernel call where it runs: inside the
    model, its inputs just written by the layer before and its weights as cold as a pass leaves them,
    not replayed alone on warm caches. ``seconds``: each kernel's seconds, summed over its calls. Only
    the operator's own call is timed; the recording around it is not."""

    def __init__(self):
        super().__init__()
        self.seconds: Counter = Counter()
        self._last = 0.0

    def call(self, func, args, kwargs):
        t0 = time.perf_counter()
        out = func(*args, **kwargs)
        self._last = time.perf_counter() - t0
        return out

    def seen(self, key: str) -> None:
        self.seconds[key] += self._last


def in_model_times(model: torch.nn.Module, example: torch.Tensor, passes: int = 5, warm: int = 2) -> tuple[Profile, dict]:
    """(the profile of ``model(example)``, {key: seconds of one call of that kernel inside the model}):
    the median over ``passes`` timed passes (after ``warm`` untimed ones, under the same recording) of
    each kernel's time per pass, divided by its calls per pass."""
    clocks = []
    with torch.no_grad():  # as `profile` records, so that the keys are the same
        for k in range(warm + passes):
            with KernelClock() as clock:
                model(example)
            if k >= warm:
                clocks.append(clock)
    found = clocks[0].profile
    return found, {key: statistics.median(c.seconds[key] for c in clocks) / n for key, n in found.calls.items()}


def _loose(value):
    if isinstance(value, torch.Tensor):
        return [list(value.shape), str(value.dtype)]
    if isinstance(value, (list, tuple)):
        return [_loose(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _loose(v) for k, v in value.items()}
    return value if value is None or isinstance(value, (bool, int, float, str)) else repr(value)


def profile(model: torch.nn.Module, example: torch.Tensor) -> Profile:
    """The kernels of ``model(example)``. On the meta device nothing is computed, and the kernels are the
    ones the CPU runs (`_fake_cpu`); on another device, the kernels it runs."""
    if example.device.type == "meta":
        try:
            fake_model, fake_example, mode = _fake_cpu(model, example)
            with mode:
                return _record(fake_model, fake_example)
        except Exception:  # noqa: BLE001 - a forward fake tensors cannot run (a tensor kept outside its
            pass  # parameters and buffers, a value read from a tensor): its kernels on the meta device
    return _record(model, example)


def _record(model: torch.nn.Module, example: torch.Tensor) -> Profile:
    with torch.no_grad(), KernelRecorder() as recorder:
        model(example)
    return recorder.profile


def _fake_cpu(model: torch.nn.Module, example: torch.Tensor):
    """(a copy of ``model``, ``example``, the mode they run in) with every tensor a fake CPU tensor: its
    data on the meta device (nothing allocated or computed), its device the CPU. PyTorch chooses kernels
    by device, and on meta it chooses otherwise than on the CPU: attention's math path (bmm, softmax)
    instead of the CPU's fused kernel, no `nn.MultiheadAttention` fast path, other strides after a
    permute. Recorded on fake CPU tensors, the profile is the CPU's kernels, key for key."""
    import copy

    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

    mode = FakeTensorMode()
    cpu = torch.device("cpu")

    def fake(tensor: torch.Tensor) -> torch.Tensor:
        return FakeTensor(mode, tensor if tensor.device.type == "meta" else tensor.to("meta"), cpu)

    model = copy.deepcopy(model)
    with torch.no_grad():
        for module in model.modules():
            for name, param in module._parameters.items():
                if param is not None:
                    module._parameters[name] = torch.nn.Parameter(fake(param.data), requires_grad=False)
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    module._buffers[name] = fake(buffer)
    return model, fake(example), mode


# -- replaying and timing ---------------------------------------------------------------------------


def _operator(name: str):
    """``aten.convolution.default`` -> the OpOverload."""
    namespace, packet, overload = name.split(".")
    return getattr(getattr(getattr(torch.ops, namespace), packet), overload)


_POOL = 1 << 22  # normal draws made once per dtype, copied into every replayed tensor
_STRIDE = 1_000_003  # a prime: each tensor starts at its own place in the pool
_drawn = [0]  # tensors made so far


@functools.lru_cache(maxsize=8)
def _pool(dtype: torch.dtype) -> torch.Tensor:
    """2 x _POOL values: any _POOL of them in a row, from any start below _POOL, is one slice."""
    return torch.randn(_POOL, generator=torch.Generator().manual_seed(0)).to(dtype).repeat(2)


def _normal(size: int, dtype: torch.dtype) -> torch.Tensor:
    """``size`` values drawn from N(0, 1), as a timing needs them (no zeros, no denormals): the draws of
    `_pool`, repeated, from a start of its own, so that two inputs of one kernel differ (a difference
    of equal tensors is all zeros). Copying them is 20x faster than drawing: at batch 16, drawing the
    inputs of a registry's kernels took 14 s of their 70 s of timing."""
    pool, out = _pool(dtype), torch.empty(size, dtype=dtype)
    offset = _drawn[0] * _STRIDE % _POOL
    _drawn[0] += 1
    for start in range(0, size, _POOL):
        n = min(_POOL, size - start)
        out[start:start + n].copy_(pool[offset:offset + n])
    return out


def _tensor(spec: dict, dtype_override: torch.dtype | None) -> torch.Tensor:
    dtype = getattr(torch, spec["d"])
    if dtype_override is not None and dtype.is_floating_point:
        dtype = dtype_override
    shape = spec["T"]
    strides = spec.get("s")
    size = 1 + sum((n - 1) * s for n, s in zip(shape, strides, strict=True)) if strides else math.prod(shape)
    if dtype.is_floating_point:
        base = _normal(max(size, 1), dtype)
    elif dtype == torch.bool:
        base = torch.ones(max(size, 1), dtype=dtype)
    else:
        base = torch.zeros(max(size, 1), dtype=dtype)  # indices: 0 is always valid
    return base.as_strided(shape, strides) if strides else base[:size].view(shape)


def _decode(value, dtype_override):
    if isinstance(value, dict):
        if "T" in value:
            return _tensor(value, dtype_override)
        if "f" in value:
            return float(value["f"])
        if "dtype" in value:
            dtype = getattr(torch, value["dtype"])
            return dtype_override if dtype_override is not None and dtype.is_floating_point else dtype
        if "device" in value:
            return torch.device("cpu")
        if "memory_format" in value:
            return getattr(torch, value["memory_format"])
        if "layout" in value:
            return getattr(torch, value["layout"])
    if isinstance(value, list):
        return [_decode(v, dtype_override) for v in value]
    return value


def replay(key: str, dtype: torch.dtype | None = None):
    """A call of the recorded kernel ``key`` on random CPU tensors of its shapes (floating tensors in
    ``dtype`` where given): a function of no arguments. ValueError for an unreplayable kernel."""
    name, args, kwargs = json.loads(key)
    if isinstance(args, str):
        raise ValueError(f"{name}: {args}")
    func = _operator(name)
    args, kwargs = _decode(args, dtype), {k: _decode(v, dtype) for k, v in kwargs.items()}
    _zero_what_it_writes(func, args, kwargs)
    return functools.partial(func, *args, **kwargs)


def _zero_what_it_writes(func, args: list, kwargs: dict) -> None:
    """Start the tensors an in-place kernel writes at zero (whatever the kernel: an activation, add_,
    an ``out=``), from which an activation stays at zero or goes to a normal fixed point (sigmoid_ to
    0.66), never through denormals. Called
    again and again on its own output, silu_ or hardswish_ halves values near zero on each call, so that
    after about 120 calls they pass through denormals, which cost up to 4x here (hardswish_ at batch 16:
    52 us a call, 106 us in the transit): the median of a timing depended on how many calls it took.
    On zeros they cost what they cost on fresh normal values (silu_ 157 us, out of place 159 us)."""
    for i, argument in enumerate(func._schema.arguments):
        if argument.alias_info is None or not argument.alias_info.is_write:
            continue
        value = args[i] if i < len(args) and not argument.kwarg_only else kwargs.get(argument.name)
        if isinstance(value, torch.Tensor) and value.dtype.is_floating_point:
            value.zero_()


def as_recorded(key: str, dtype: torch.dtype) -> str:
    """The key of a kernel that ran in ``dtype`` as a profile records it (floating tensors in float32,
    as the meta profile holds them and `replay` casts them): the inverse of replaying it in ``dtype``."""
    if dtype == torch.float32:
        return key
    name = str(dtype).removeprefix("torch.")
    return key.replace(f'"d":"{name}"', '"d":"float32"').replace(f'{{"dtype":"{name}"}}', '{"dtype":"float32"}')


STEADY_CALLS = 5  # the fewest calls whose spread `time_call` trusts to stop early
# a kernel called this often in 10 ms has settled: over its first 10 ms its median was that of its
# first 20 ms within +0.0 to +0.3% (median by size, 90% within +1.5%) for 300 kernels of 63 to 1,500
# calls in 10 ms, at batch 1 and 16, while timing them again a minute later moved them by -2% to +40%
# (p10 to p90). Kernels called 5 to 31 times in 10 ms were 0.4 to 3.5% slower in their first 10 ms
# (benchmarks/kernel_floor.py). Stopping the many small kernels at 10 ms took `predict --all` at batch
# 16 from 65 s to 53 s the first time.
SETTLED_CALLS = 50


def spread(items: list) -> list:
    """``items`` in an order drawn at random (seeded by their number: the same list is timed in the
    same order), to time kernels in: each model's kernels then spread over the whole timing. The
    machine's speed wanders over seconds (the times of kernels timed one after another moved together
    over about 20 of them, 0.5 s), so kernels timed model by model gave each model's sum that wander
    whole: 12 models' sums at batch 1 moved 14.4% between timings minutes apart (mean sd, their common
    drift taken out), against 5.7% in this order. What remains common to every model, the calibration's
    fit absorbs."""
    order = list(items)
    random.Random(len(order)).shuffle(order)
    return order


def _relative_error(times: list[float]) -> float:
    """The relative standard error of the mean of ``times``."""
    mean = statistics.fmean(times)
    return statistics.stdev(times) / mean / len(times) ** 0.5 if mean > 0 else float("inf")


def time_call(fn, min_calls: int = 5, min_s: float = 0.02, max_s: float = 1.0, steady: float | None = None,
              settled: int | None = None, clock=time.perf_counter) -> tuple[float, int]:
    """(median seconds, calls) of ``fn()`` after one warm call: at least ``min_calls`` calls and
    ``min_s`` seconds, stopping once ``max_s`` is spent (after 3 calls at least, or one call longer
    than ``max_s``); with ``steady``, also once ``min_s`` is spent over 5 calls at least whose mean's
    relative standard error is at most ``steady`` (a slow call that repeats itself needs no more); with
    ``settled``, also once half of ``min_s`` is spent over that many calls at least (`SETTLED_CALLS`)."""
    fn()
    times = []
    start = clock()
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        times.append(t1 - t0)
        spent = t1 - start
        if len(times) >= min_calls and spent >= min_s:
            break
        if settled is not None and len(times) >= settled and spent >= min_s / 2:
            break
        if spent >= max_s and (len(times) >= 3 or times[0] >= max_s):
            break
        if steady is not None and len(times) >= STEADY_CALLS and spent >= min_s and _relative_error(times) <= steady:
            break
    return statistics.median(times), len(times)
