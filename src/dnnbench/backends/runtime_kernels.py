"""A runtime's own kernels, each timed in it: the nn-Meter step for a runtime that fuses.

ONNX Runtime and OpenVINO fold normalisations into convolutions and fuse activations and residual
additions into them, so eager kernels summed predict them poorly (on ONNX Runtime their sum ran 1.4x
to 8x its time, differently by model). What such a runtime runs as one kernel is timed here as one
kernel: each convolution, matrix product, batched product, softmax, layer norm, fused attention,
pooling, mean, concatenation, squeeze-and-excitation product and transpose (a permuted tensor made
contiguous: a channel shuffle) of a profile (`measure.kernels`) becomes a graph of that one
operator, built from the kernel's key (shapes and arguments) and run as the backend runs a model (its
threads, its graph optimisations; for OpenVINO int8, quantized as OpenVINO runs a model NNCF
quantized, `_quantize`). A layer (a convolution, a linear layer) is built with its epilogue
(`measure.profile`: the activations and residual addition that take its output, as the model's ONNX
export writes them), which a runtime fuses into the layer or runs beside it: a SiLU is OpenVINO's
post-op but a node of its own on ONNX Runtime (QuickGelu). Normalisations after a layer fold into
its weights and are not timed. `kernels` gives a profile's runtime kernels: a layer's calls apart by
epilogue, the epilogue in the key's keyword arguments (``"then": [tags]``). A runtime kernel's key is
that key prefixed with the runtime's name (``onnxruntime|``, ``openvino|``, ``openvino-int8|``).

Kernels are timed in groups (`Timer`), by the runtime's own counters, each kernel's own nodes only: a
one-operator graph pays layout reorders at its input and output that a chain of layers in a model pays
once (on OpenVINO, a depthwise convolution's were 3x its own time), and a run's overhead.
"""

from __future__ import annotations

import functools
import json
import re
import statistics

_CONV = "aten.convolution.default"
_OPS = {_CONV, "aten.addmm.default", "aten.mm.default", "aten.bmm.default", "aten._softmax.default",
        "aten._safe_softmax.default", "aten.native_layer_norm.default",
        "aten._scaled_dot_product_flash_attention_for_cpu.default",
        # what runs between the layers: pooling, means (global pooling, squeeze-and-excitation), concatenation
        "aten.max_pool2d_with_indices.default", "aten.avg_pool2d.default", "aten.mean.dim", "aten.cat.default",
        # a feature map times a per-channel gate (squeeze-and-excitation): no layer can take it as a
        # post-op (4.6 of efficientnet_b0's 64 ms in OpenVINO fp32 at batch 16)
        "aten.mul.Tensor",
        # a permuted tensor made contiguous: a Transpose (ShuffleNet's channel shuffle, 7.7 of its 24 ms
        # in OpenVINO int8 at batch 16, its ShuffleChannels nodes)
        "aten.clone.default"}
# what OpenVINO runs in int8 in a model NNCF quantized: its weighted layers (input and weights) but
# grouped and depthwise convolutions (f32: in regnet_x_400mf they were half its time at batch 16), and
# what follows a quantized layer's output (pooling, means, concatenation: u8 in, u8 out)
_QUANTIZED = {_CONV, "aten.addmm.default", "aten.mm.default"}
_U8 = {"aten.max_pool2d_with_indices.default", "aten.avg_pool2d.default", "aten.mean.dim", "aten.cat.default"}
_OPSET = 20  # as `onnx_export` writes a model: GELU is one operator (Gelu) since 20
# (backend, precision) -> the prefix of its kernels' keys, on the CPU
RUNTIMES = {("onnxruntime", "fp32"): "onnxruntime|", ("openvino", "fp32"): "openvino|",
            ("openvino", "int8"): "openvino-int8|"}
# how the kernels of eager (`measure.kernels.replay`, `time_call`) and of each runtime (here) are built
# and timed: raise one when that changes, and the times an earlier version stored are taken again
# (eager 2: what an in-place kernel writes starts at zero, a kernel settled over 50 calls stops at 10 ms;
# openvino-int8 2: a SiLU epilogue quantized as NNCF quantizes it)
FORMATS = {"eager": 2, "onnxruntime": 1, "openvino": 1, "openvino-int8": 2}
# the libraries that build and run them: a time taken with other versions is taken again
_LIBRARIES = {"eager": ("torch",), "onnxruntime": ("onnx", "onnxruntime"), "openvino": ("onnx", "openvino"),
              "openvino-int8": ("onnx", "openvino")}
# what OpenVINO runs around a kernel in a one-operator graph that a model runs once or fuses into the
# layer before (layer types of its compiled graph): layout reorders, the graph's ends, a quantization
_AROUND = {"Input", "Output", "Reorder", "FakeQuantize"}
_QUANTIZER = re.compile(r"k\d+_q\d+")  # the names `_graph` gives the quantizers of a branch's inputs
_OUTPUT = re.compile(r"k\d+_y")  # and a branch's output


def prefix(setup) -> str | None:
    """The prefix of the keys of ``setup``'s runtime kernels, or None where its runtime's are not timed."""
    return RUNTIMES.get((setup.backend, setup.precision)) if setup.device == "cpu" else None


def described() -> str:
    """The setups whose runtimes' kernels are timed, in words."""
    return "ONNX Runtime fp32, OpenVINO fp32 or int8, on the CPU"


@functools.lru_cache(maxsize=1 << 16)  # asked of every kernel of every profile: 1,500 share a few thousand keys
def runs(key: str) -> bool:
    """Whether ``key`` (an eager kernel's) is a kernel the runtimes run as one, and is timed here."""
    name, args, _ = json.loads(key)
    if name not in _OPS or isinstance(args, str):
        return False
    if name == _CONV:  # 2-d, not transposed
        return len(args[0]["T"]) == 4 and not args[6]
    if name == "aten.cat.default":
        return all(isinstance(t, dict) and "T" in t for t in args[0])
    if name in ("aten.max_pool2d_with_indices.default", "aten.avg_pool2d.default"):
        return len(args[0]["T"]) == 4
    if name == "aten.mul.Tensor":
        return _gated(args)
    if name == "aten.clone.default":
        return isinstance(args[0], dict) and "s" in args[0] and _permutation(args[0]) is not None
    return True


def _permutation(spec: dict) -> list[int] | None:
    """The order of a tensor's dimensions in memory, outermost first, where its strides (``spec["s"]``)
    are a contiguous tensor's permuted (a transpose's view), else None (a slice, an expansion)."""
    shape, strides = spec["T"], spec["s"]
    order = sorted(range(len(shape)), key=lambda d: (-strides[d], d))
    expected = 1
    for d in reversed(order):
        if shape[d] != 1 and strides[d] != expected:
            return None
        expected *= shape[d]
    return order


def _gated(args: list) -> bool:
    """Whether a product's ``args`` are a feature map [N,C,H,W] and a gate [N,C,1,1] of the same batch
    (a squeeze-and-excitation's; at batch 1 a layer scale [1,C,1,1] reads the same, and is counted too)."""
    shapes = [a["T"] for a in args[:2] if isinstance(a, dict) and "T" in a]
    if len(shapes) != 2 or any(len(s) != 4 for s in shapes):
        return False
    gate, feature = sorted(shapes, key=lambda s: s[2] * s[3])
    return gate[2:] == [1, 1] and feature[2] * feature[3] > 1 and gate[:2] == feature[:2]


def runtime_key(key: str, prefix: str) -> str:
    return prefix + key


def kernels(profile: dict) -> tuple[dict, dict]:
    """({key: calls}, {key: KernelSpec}) of the kernels a runtime runs of ``profile`` (a profile dict):
    those it runs as one (`runs`), a layer's calls apart by epilogue, each epilogue in its key
    (`with_epilogue`), with its layer's spec."""
    from ..measure.profile import Profile

    found = Profile.from_dict(profile)
    calls, specs = {}, {}
    for key, n in found.calls.items():
        if not runs(key):
            continue
        epilogues = found.then.get(key, {})
        for tags, m in [("", n - sum(epilogues.values())), *epilogues.items()]:
            if m > 0:
                k = with_epilogue(key, tags)
                calls[k] = calls.get(k, 0) + m
                specs[k] = found.specs[key]
    return calls, specs


@functools.lru_cache(maxsize=1 << 16)
def with_epilogue(key: str, tags: str) -> str:
    """The key of layer ``key``'s kernel with its epilogue ``tags`` (joined by commas; "" for none)."""
    if not tags:
        return key
    name, args, kwargs = json.loads(key)
    return json.dumps([name, args, {**kwargs, "then": tags.split(",")}], separators=(",", ":"))


def _runtime_of(key: str) -> str:
    """The runtime a runtime kernel's key names: ``onnxruntime``, ``openvino``, ``openvino-int8``."""
    return key.split("|", 1)[0]


def is_runtime(key: str) -> bool:
    return _runtime_of(key) + "|" in RUNTIMES.values()


def eager_key(key: str) -> str:
    return key.split("|", 1)[1] if is_runtime(key) else key


def stamp(key: str) -> str:
    """What a time of kernel ``key`` was taken with: the format of its timing and the versions of the
    libraries that ran it. A stored time whose stamp differs from today's is taken again."""
    return _stamp(_runtime_of(key) if is_runtime(key) else "eager")


def stamped_today(stored: str | None, key: str, libraries: bool = True) -> bool:
    """Whether a time of ``key`` stamped ``stored`` was taken as today's dnnbench (and, with ``libraries``,
    today's libraries) take it."""
    today = stamp(key)
    return stored == today if libraries else stored is not None and stored.split(";")[0] == today.split(";")[0]


@functools.lru_cache(maxsize=None)
def _stamp(runtime: str) -> str:
    from importlib import metadata

    found = [f"{runtime}={FORMATS[runtime]}"]
    for package in _LIBRARIES[runtime]:
        try:
            found.append(f"{package}={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package}=none")
    return ";".join(found)


def by_eager_key(rows: dict, prefix: str) -> dict:
    """The runtime kernels of ``rows`` (a kernel table: {key: row}) that ``prefix`` names, by their eager keys."""
    return {k.removeprefix(prefix): row for k, row in rows.items() if k.startswith(prefix)}


def replay(key: str, threads: int):
    """A call of the eager kernel ``key`` as its runtime runs it, alone: a function of no arguments that
    gives the kernel's output (an array). ValueError for a kernel it does not run as one (`runs`)."""
    runtime = _runtime_of(key)
    model, feeds = _graph(eager_key(key), quantized=runtime == "openvino-int8")
    if runtime == "onnxruntime":
        return _onnxruntime(model, feeds, threads)
    request, inputs = _openvino(model, feeds, runtime, threads)
    return lambda: request.infer(inputs, share_inputs=True)[0]


# kernels are compiled and timed in groups (independent branches of one graph, run one after another,
# each timed by the runtime's counters): OpenVINO compiles a graph in 0.1 to 0.3 s, and times a kernel faster
# (64 throughout saved 6 of 50 s at batch 16, but batch 1's small kernels ran colder in the bigger group:
# the sums of 36 models' kernels 1.05x in the median and up to 1.24x, against 32 and 32 timed between
# them; at batch 16, where 32 kernels already move more than the cache holds, 0.98x and 1.01x)
GROUP_KERNELS = 32
GROUP_KERNELS_COLD = 64  # where the group's traffic is already beyond the last-level cache
GROUP_BYTES = 1 << 29  # of the group's kernels' traffic (`work`): their inputs, outputs and weights
GROUP_MAX_S = 1.0  # a group's calls stop after this long (3 calls at least)
GROUP_STEADY = 0.01  # or once the mean of its calls (5 at least, 0.2 s) is known within this (standard error)


class Timer:
    """Times runtime kernels (keys prefixed, `RUNTIMES`): ``time(key)`` -> (seconds of one call, calls).
    Kernels are timed in groups of the ``keys`` given, of like traffic (``work``: {key: [MACs, bytes]}),
    in the order ``order`` holds (each group's together, the groups in an order drawn at random): a
    group is independent branches of one graph, run one after another, each kernel timed by the
    runtime's own counters (OpenVINO's performance counters, ONNX Runtime's profiler), its own nodes
    only: a one-operator graph pays layout reorders and a call's overhead that a model's chain of
    layers pays once. A group is timed when one of its kernels is asked for, and its other kernels'
    times are kept for their asking, once (a kernel asked for again is timed again, with its group);
    a group that cannot be built is split, so that only the kernel at fault fails."""

    def __init__(self, keys: list[str], threads: int, work: dict | None = None):
        self.threads, self.group_of, self.ready, self.compiled = threads, {}, {}, {}
        from ..measure.kernels import spread
        from .cpu import last_level_cache_bytes

        group, traffic, cache, groups = [], 0, last_level_cache_bytes(), []
        for key in _by_traffic(keys, work):
            nbytes = ((work or {}).get(key) or [0, 0])[1]
            size = GROUP_KERNELS_COLD if traffic > cache else GROUP_KERNELS  # no kernel stays cached anyway
            if not group or len(group) >= size or traffic + nbytes > GROUP_BYTES or \
                    _runtime_of(key) != _runtime_of(group[0]):
                group, traffic = [], 0
                groups.append(group)
            group.append(key)
            traffic += nbytes
            self.group_of[key] = group
        # the groups in an order drawn at random, not by traffic: the machine's drift over the timing then
        # falls on small and large kernels, small and large models, alike
        self.order = [key for group in spread(groups) for key in group]

    def time(self, key: str, again: bool = False) -> tuple[float, int]:
        """``key``'s time, from its group's timing; ``again``: its group timed afresh for it alone (the
        others were taken already)."""
        if key in self.ready and not again:
            return self.ready.pop(key)
        group = tuple(self.group_of.get(key) or [key])
        try:
            found = self._time_group(group)
        except Exception:  # noqa: BLE001 - a kernel the runtime cannot build: the others alone, its error raised
            if len(group) == 1:
                raise
            for other in group:
                self.group_of[other] = [other]
            return self.time(key, again)
        if not again:
            self.ready.update({k: t for k, t in found.items() if k != key})
        return found[key]

    def _time_group(self, group: tuple) -> dict:
        from ..measure.kernels import time_call

        if group not in self.compiled:  # one group in memory at a time
            self.compiled = {}
            runtime = _runtime_of(group[0])
            model, feeds = _group_graph(group)
            self.compiled = {group: (_OnnxRuntimeGroup if runtime == "onnxruntime" else _OpenVinoGroup)(
                model, feeds, runtime, self.threads, len(group))}
        compiled = self.compiled[group]
        _, calls = time_call(compiled.run, min_calls=20, min_s=0.2, max_s=GROUP_MAX_S, steady=GROUP_STEADY)
        if not compiled.reusable:
            self.compiled = {}
        found = dict(zip(group, compiled.times()))
        if unnamed := [key for key, times in found.items() if not times]:  # a node named otherwise than k<i>_
            raise ValueError(f"the runtime's counters name none of the nodes of {json.loads(eager_key(unnamed[0]))[0]}")
        return {key: (_fast_half_mean(times), calls) for key, times in found.items()}


def _by_traffic(keys: list[str], work: dict | None) -> list[str]:
    """The runtime kernels of ``keys`` in the order they are put in groups: by runtime, then by traffic where
    ``work`` gives it. A small kernel then shares its group with small ones, which leave its data in
    the cache, as the layer before it does in a model at batch 1; behind a large one it ran cold (at
    batch 1, 36 models' layer norms 1.8x and means 1.6x slower from one grouping to another)."""
    found = [k for k in keys if is_runtime(k)]
    return sorted(found, key=lambda k: (_runtime_of(k), ((work or {}).get(k) or [0, 0])[1])) if work else found


COUNTER_S = 1e-6  # the runtimes' counters count whole microseconds


def _fast_half_mean(times: list[float]) -> float:
    """The mean of the faster half of ``times``: a kernel's time on a quiet machine, as its calls slowed
    by neighbours leave it (timed twice a minute apart, 29 of 36 models' sums at batch 16 within 3%
    against 26 of 36 by the middle half's mean), and finer than the counters' microsecond for a kernel
    of a few (a kernel below one is given half of one)."""
    fast = sorted(times)[:max(1, len(times) // 2)]
    return max(sum(fast) / len(fast), COUNTER_S / 2)


_BRANCH = re.compile(r"(?:^|\s)k(\d+)_")  # ONNX Runtime names a node it fuses "fused k3_n0"


def _owner(node: str, n: int) -> int | None:
    """The index of the kernel of a group (of ``n``) that a node named ``node`` belongs to, or None."""
    found = _BRANCH.search(node)
    return int(found.group(1)) if found and int(found.group(1)) < n else None


class _OpenVinoGroup:
    """A group compiled as the backend compiles a model, its counters on; ``times()``: each kernel's
    own seconds in each call after the first."""

    def __init__(self, model, feeds: dict, runtime: str, threads: int, n: int):
        self.request, self.inputs = _openvino(model, feeds, runtime, threads)
        self.n, self.own = n, []
        self.owner = _openvino_owners(self.request.get_compiled_model().get_runtime_model(), n)

    reusable = True

    def run(self):
        self.request.infer(self.inputs, share_inputs=True)
        seconds = [0.0] * self.n
        for p in self.request.get_profiling_info():
            if (i := self.owner.get(p.node_name)) is not None:
                seconds[i] += p.real_time.total_seconds()
        self.own.append(seconds)

    def times(self) -> list[list[float]]:
        own, self.own = self.own[1:], []  # the first call warms
        return [[call[i] for call in own] for i in range(self.n)]


def _openvino_owners(graph, n: int) -> dict:
    """{node name: the index of the group's kernel it computes} of each node of OpenVINO's compiled
    ``graph`` that a model pays for. OpenVINO names the nodes it makes (a layer norm's ReduceMean_3782,
    attention's fused Subgraph), so a node belongs to the branch it is connected to (constants aside:
    branches may share one), named by its inputs ``k<i>_``. Left out: `_AROUND`, and in int8 the
    quantization of a branch's input and the dequantization of its output, which a model fuses into the
    layers around (their original layers are all the graph's quantizers, `_graph`, or OpenVINO's
    ``/Dequantization`` of an output, not fused into the layer: an int8 FullyConnected carries its own)."""
    def layer(op) -> str:
        info = op.get_rt_info()
        return info["layerType"].astype(str) if "layerType" in info else op.get_type_name()

    def originals(op) -> list[str]:
        info = op.get_rt_info()
        names = info["originalLayersNames"].astype(str) if "originalLayersNames" in info else ""
        return [x for x in names.split(",") if x] or [op.get_friendly_name()]

    ops = [op for op in graph.get_ordered_ops() if layer(op) != "Const"]
    root = {op.get_friendly_name(): op.get_friendly_name() for op in ops}

    def find(x: str) -> str:
        while root[x] != x:
            root[x] = root[root[x]]
            x = root[x]
        return x

    for op in ops:
        for source in (i.get_source_output().get_node().get_friendly_name() for i in op.inputs()):
            if source in root:
                root[find(source)] = find(op.get_friendly_name())
    branch = {}  # component -> kernel index, from the names OpenVINO kept
    for op in ops:
        for name in [op.get_friendly_name(), *originals(op)]:
            if (i := _owner(name, n)) is not None:
                branch.setdefault(find(op.get_friendly_name()), i)
    owners = {}
    for op in ops:
        names = originals(op)
        feeds_output = all(layer(t.get_node()) == "Output" for out in op.outputs() for t in out.get_target_inputs())
        dequantizes = [x for x in names if "/Dequantization" in x]  # alone, not fused into a layer (a FullyConnected)
        quantizes = all(_QUANTIZER.fullmatch(x) for x in names) or (
            feeds_output and dequantizes and all(x in dequantizes or _OUTPUT.fullmatch(x) for x in names))
        if layer(op) not in _AROUND and not quantizes and find(op.get_friendly_name()) in branch:
            owners[op.get_friendly_name()] = branch[find(op.get_friendly_name())]
    return owners


# what ONNX Runtime runs around a kernel in a one-operator graph that a model runs once: layout reorders
_ORT_AROUND = {"ReorderInput", "ReorderOutput"}


# a node with next to no work, a branch of every group on ONNX Runtime: what its profiler counts for
# any node (3 µs for a ReLU of one value, where a whole shufflenet_v2_x0_5 at batch 1 ran in 0.49 ms
# with the profiler off, and its nodes summed to 1.11 ms with it on)
_PROBE = "counter_probe"


def _with_probe(model, feeds: dict) -> tuple:
    """``model`` and ``feeds`` with the `_PROBE` branch added."""
    import numpy as np
    from onnx import TensorProto, helper

    graph = model.graph
    graph.input.append(helper.make_tensor_value_info(f"{_PROBE}_x", TensorProto.FLOAT, [1]))
    graph.output.append(helper.make_tensor_value_info(f"{_PROBE}_y", TensorProto.FLOAT, [1]))
    graph.node.append(helper.make_node("Relu", [f"{_PROBE}_x"], [f"{_PROBE}_y"], name=_PROBE))
    return model, {**feeds, f"{_PROBE}_x": np.ones(1, dtype=np.float32)}


class _OnnxRuntimeGroup:
    """A group in a session set up as the backend's, its profiler on; ``times()``: each kernel's own
    seconds in each call after the first (the profiler's node times, without a run's own overhead),
    less what the profiler counts for a node with no work (`_PROBE`) for each of the kernel's nodes."""

    def __init__(self, model, feeds: dict, runtime: str, threads: int, n: int):
        import tempfile

        self.folder = tempfile.TemporaryDirectory(prefix="dnnbench-ort-")
        model, self.feeds = _with_probe(model, feeds)
        self.session = _onnxruntime_session(model, threads, profile=f"{self.folder.name}/profile")
        self.n = n

    reusable = False  # its profiler is read once

    def run(self):
        self.session.run(None, self.feeds)

    def times(self) -> list[list[float]]:
        with open(self.session.end_profiling()) as f:  # the profiler stops: a group is timed once
            events = json.load(f)
        by_node = {}  # node -> its kernel times, call by call
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") \
                    and e.get("args", {}).get("op_name") not in _ORT_AROUND:
                by_node.setdefault(e["name"].removesuffix("_kernel_time"), []).append(e["dur"] * 1e-6)
        return _net_of_probe(by_node, self.n)


def _net_of_probe(by_node: dict, n: int) -> list[list[float]]:
    """Each of ``n`` kernels' seconds in each call after the first, from ``by_node`` {node name: its
    seconds call by call}: its nodes' summed, less the median of `_PROBE`'s for each of its nodes."""
    empty = statistics.median(by_node.get(_PROBE, [0.0, 0.0])[1:] or [0.0])
    own, nodes = [[] for _ in range(n)], [0] * n
    for node, durations in by_node.items():
        if (i := _owner(node, n)) is not None:
            calls = durations[1:]  # the first call warms
            own[i] = [a + b for a, b in zip(own[i], calls)] if own[i] else calls
            nodes[i] += 1
    return [[max(t - nodes[i] * empty, 0.0) for t in own[i]] for i in range(n)]


def _onnxruntime(model, feeds: dict, threads: int):
    session = _onnxruntime_session(model, threads)
    return lambda: session.run(None, feeds)[0]


def _onnxruntime_session(model, threads: int, profile: str | None = None):
    """A session of ``model`` set up as the backend runs a model; with ``profile``, its profiler on,
    writing under that prefix."""
    import onnxruntime as ort

    from .onnxruntime import session_options

    options = session_options(threads)
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _openvino(model, feeds: dict, runtime: str, threads: int) -> tuple:
    """(an infer request of ``model`` compiled as the backend compiles, with its counters on, its inputs)."""
    from .openvino import compile_config, core  # as the backend compiles a model

    precision = "int8" if runtime == "openvino-int8" else "fp32"
    # read by the core, as the backend reads its model: openvino.convert_model starts helper processes
    # that went on using a fifth of a core while the kernels were timed
    graph = core().read_model(model=model.SerializeToString(), weights=b"")
    config = {**compile_config(precision, threads), "PERF_COUNT": True}
    return core().compile_model(graph, "CPU", config).create_infer_request(), list(feeds.values())


def _group_graph(keys: tuple) -> tuple:
    """(one ONNX model of the kernels ``keys`` (one runtime's) as independent branches, each kernel's
    names prefixed ``k<i>_``, their inputs). Built from the kernels' parts, so that each weight is
    copied into the model once: building each kernel's model and merging them copied it four times
    (under a profiler, 2.7 of the 6.8 s of building openvino's groups for 36 models at batch 16)."""
    from onnx import TensorProto, helper

    quantized = keys[0].startswith("openvino-int8|")
    nodes, inputs, inits, outputs, feeds = [], [], [], [], {}
    for i, key in enumerate(keys):
        prefix = f"k{i}_"
        node, given, weights, values = _parts(eager_key(key), quantized=quantized)
        for n in node:
            n.name = prefix + n.name
            n.input[:] = [prefix + x if x else x for x in n.input]  # an absent input stays absent
            n.output[:] = [prefix + y for y in n.output]
        for tensor in (*given, *weights):
            tensor.name = prefix + tensor.name
        nodes += node
        inputs += given
        inits += weights
        outputs.append(helper.make_tensor_value_info(f"{prefix}y", TensorProto.FLOAT, None))
        feeds.update({prefix + name: x for name, x in values.items()})
    return _model(nodes, inputs, outputs, inits), feeds


def _model(nodes: list, inputs: list, outputs: list, inits: list):
    """An ONNX model of these parts, each copied into it once (``helper.make_model`` copies a graph whole)."""
    from onnx import helper

    model = helper.make_model(helper.make_graph([], "kernels", [], []),
                              opset_imports=[helper.make_opsetid("", _OPSET)])
    for field, parts in ((model.graph.node, nodes), (model.graph.input, inputs), (model.graph.output, outputs),
                         (model.graph.initializer, inits)):
        field.extend(parts)
    return model


def _graph(key: str, quantized: bool = False):
    """(an ONNX model of the one operator of ``key``, its inputs as numpy arrays): activations as
    inputs, weights as initialisers (so that the session can pack them, as it packs a model's);
    ``quantized``: as OpenVINO runs it in a quantized model (`_quantize`)."""
    from onnx import TensorProto, helper

    nodes, inputs, inits, feeds = _parts(key, quantized)
    return _model(nodes, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits), feeds


def _parts(key: str, quantized: bool = False) -> tuple:
    """(nodes, input value infos, initialisers, {input name: numpy array}) of `_graph`'s model of
    ``key``, its output named ``y``."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    if not runs(key):
        raise ValueError(f"{json.loads(key)[0]} is not a kernel a runtime runs as one")
    name, args, kwargs = json.loads(key)
    inputs, feeds, inits = [], {}, []

    def activation(spec: dict, label: str) -> str:
        inputs.append(helper.make_tensor_value_info(label, TensorProto.FLOAT, spec["T"]))
        feeds[label] = _normal(spec["T"])
        return label

    def weight(spec: dict | None, label: str, transpose: bool = False) -> str:
        if spec is None:
            return ""
        shape = spec["T"][::-1] if transpose else spec["T"]
        inits.append(numpy_helper.from_array(_normal(shape) * 0.02, label))
        return label

    if name == _CONV:
        x, w, b, stride, pad, dilation, _, _, groups = args[:9]
        node = [helper.make_node("Conv", [activation(x, "x"), weight(w, "w"), weight(b, "b")], ["y"],
                                 strides=stride, pads=pad * 2, dilations=dilation, group=int(groups))]
    elif name == "aten.addmm.default":  # a linear layer: bias + input x weight (the weight's transpose)
        bias, a, b = args[:3]
        node = [helper.make_node("Gemm", [activation(a, "a"), weight(b, "w", transpose=True), weight(bias, "c")],
                                 ["y"], transB=1)]
    elif name == "aten.mm.default":
        a, b = args[:2]
        node = [helper.make_node("Gemm", [activation(a, "a"), weight(b, "w", transpose=True)], ["y"], transB=1)]
    elif name == "aten.bmm.default":  # a product of two activations (attention)
        node = [helper.make_node("MatMul", [activation(args[0], "a"), activation(args[1], "b")], ["y"])]
    elif name in ("aten._softmax.default", "aten._safe_softmax.default"):
        node = [helper.make_node("Softmax", [activation(args[0], "x")], ["y"], axis=int(args[1]))]
    elif name == "aten.native_layer_norm.default":
        x, shape, w, b, eps = args[:5]
        node = [helper.make_node("LayerNormalization", [activation(x, "x"), weight(w, "w"), weight(b, "b")], ["y"],
                                 axis=-len(shape), epsilon=float(eps))]
    elif name in ("aten.max_pool2d_with_indices.default", "aten.avg_pool2d.default"):
        node = [_pool(name, args, activation(args[0], "x"))]
    elif name == "aten.mean.dim":
        keep = bool(args[2]) if len(args) > 2 else False
        inits.append(numpy_helper.from_array(np.array(list(args[1]), dtype=np.int64), "axes"))
        node = [helper.make_node("ReduceMean", [activation(args[0], "x"), "axes"], ["y"], keepdims=int(keep))]
    elif name == "aten.mul.Tensor":  # a squeeze-and-excitation's gate (`_gated`)
        node = [helper.make_node("Mul", [activation(args[0], "a"), activation(args[1], "b")], ["y"])]
    elif name == "aten.clone.default":  # a transpose's view made contiguous: the tensor as laid out, permuted
        order = _permutation(args[0])
        stored = activation({"T": [args[0]["T"][d] for d in order]}, "x")
        node = [helper.make_node("Transpose", [stored], ["y"], perm=[order.index(d) for d in range(len(order))])]
    elif name == "aten.cat.default":
        dim = int(args[1]) if len(args) > 1 else 0
        node = [helper.make_node("Concat", [activation(t, f"x{i}") for i, t in enumerate(args[0])], ["y"], axis=dim)]
    else:  # fused attention: Q K^T scaled, softmax, times V, as ONNX Runtime fuses it
        q, k, v = args[:3]
        scale = kwargs.get("scale") or 1 / float(q["T"][-1]) ** 0.5
        inits.append(numpy_helper.from_array(np.array(scale, dtype=np.float32), "scale"))
        node = [helper.make_node("Transpose", [activation(k, "k")], ["kt"], perm=[0, 1, 3, 2]),
                helper.make_node("MatMul", [activation(q, "q"), "kt"], ["s"]),
                helper.make_node("Mul", ["s", "scale"], ["ss"]),
                helper.make_node("Softmax", ["ss"], ["p"], axis=-1),
                helper.make_node("MatMul", ["p", activation(v, "v")], ["y"])]
    grouped = name == _CONV and int(args[8]) > 1
    if quantized and name in _QUANTIZED | _U8 and not grouped:
        node = _quantize(node[0], inits, weights=name in _QUANTIZED)
    tail = _epilogue(node[-1], kwargs["then"], _output_shape(name, args), activation, inits, quantized) \
        if kwargs.get("then") else []
    node += tail
    paid = {id(n) for n in tail}  # an epilogue's quantizers are work a model pays for, not the input's
    for i, n in enumerate(node):  # named, so that the runtimes' counters name them (quantizers apart)
        quantizer = n.op_type in ("QuantizeLinear", "DequantizeLinear") and id(n) not in paid
        n.name = f"{'q' if quantizer else 'n'}{i}"
    for n in node:  # an absent optional input (a bias) is left out, not named "": ONNX Runtime runs another
        while n.input and not n.input[-1]:  # kernel for an empty name
            n.input.pop()
    return node, inputs, inits, feeds


def _output_shape(name: str, args: list) -> list[int]:
    """The output shape of a layer (a convolution or a linear layer) called with ``args``."""
    if name == _CONV:
        x, w, _, stride, pad, dilation = args[:6]
        size = [(n + 2 * p - d * (k - 1) - 1) // s + 1
                for n, k, s, p, d in zip(x["T"][2:], w["T"][2:], stride, pad, dilation, strict=True)]
        return [x["T"][0], w["T"][0], *size]
    a, b = args[1:3] if name == "aten.addmm.default" else args[:2]
    return [a["T"][0], b["T"][1]]


def _epilogue(layer, tags: list[str], shape: list[int], activation, inits: list, quantized: bool = False) -> list:
    """The nodes of a layer's epilogue ``tags`` after the ``layer`` node (its output renamed), as the
    model's ONNX export writes them; an addition adds an input of the layer's output ``shape``.
    ``quantized``: a SiLU (a Sigmoid and a Mul in the export) with NNCF's quantizers on the Mul's inputs
    and output, which keep OpenVINO from fusing it into the layer: it runs as an element-wise
    ``Subgraph`` of its own (at batch 16 in int8, 32 of efficientnet_b0's 59 ms)."""
    import numpy as np
    from onnx import helper, numpy_helper

    layer.output[0] = "l0"
    nodes = []

    def quantizer(x: str, label: str) -> str:  # the edge ``x`` quantized, as `_quantize` quantizes a layer's input
        nodes.extend(_quantizer(x, f"{label}_q", f"{label}_dq", inits))
        return f"{label}_dq"

    for i, tag in enumerate(tags):
        x, y = f"l{i}", "y" if i == len(tags) - 1 else f"l{i + 1}"
        if tag == "silu" and quantized:
            gate = quantizer(x, f"e{i}x")
            nodes.append(helper.make_node("Sigmoid", [x], [f"s{i}"]))
            nodes.append(helper.make_node("Mul", [gate, quantizer(f"s{i}", f"e{i}s")], [f"m{i}"]))
            nodes.append(helper.make_node("Identity", [quantizer(f"m{i}", f"e{i}m")], [y]))
        elif tag == "silu":
            nodes += [helper.make_node("Sigmoid", [x], [f"s{i}"]), helper.make_node("Mul", [x, f"s{i}"], [y])]
        elif tag == "relu6":
            inits += [numpy_helper.from_array(np.array(0, np.float32), f"lo{i}"),
                      numpy_helper.from_array(np.array(6, np.float32), f"hi{i}")]
            nodes.append(helper.make_node("Clip", [x, f"lo{i}", f"hi{i}"], [y]))
        elif tag == "add":
            nodes.append(helper.make_node("Add", [x, activation({"T": shape}, f"r{i}")], [y]))
        elif tag in ("gelu", "gelu_tanh"):
            nodes.append(helper.make_node("Gelu", [x], [y], approximate="tanh" if tag == "gelu_tanh" else "none"))
        elif tag == "hardsigmoid":
            nodes.append(helper.make_node("HardSigmoid", [x], [y], alpha=1 / 6, beta=0.5))
        else:
            nodes.append(helper.make_node(_UNARY[tag], [x], [y]))
    return nodes


_UNARY = {"relu": "Relu", "hardswish": "HardSwish", "sigmoid": "Sigmoid"}
_NORMAL = []  # draws from N(0, 1), made once


def _normal(shape):
    """An fp32 array of ``shape`` of draws from N(0, 1), the same draws repeated: a kernel's time does not
    depend on which draws, and drawing every input afresh took a quarter of a group's time at batch 16.
    A copy of its own: views of one pool would put every kernel of a group on the same memory (its
    inputs hot in the cache for the next kernel), and OpenVINO copies a read-only input on every call."""
    import numpy as np

    if not _NORMAL:
        _NORMAL.append(np.random.default_rng(0).standard_normal(1 << 20, dtype=np.float32))
    return np.resize(_NORMAL[0], shape)


def _pool(name: str, args: list, x: str):
    """A MaxPool or AveragePool node of the eager pooling's arguments (kernel, stride, padding, ...)."""
    from onnx import helper

    kernel = list(args[1])
    stride = list(args[2]) if len(args) > 2 and args[2] else kernel
    pad = list(args[3]) if len(args) > 3 else [0, 0]
    if name == "aten.max_pool2d_with_indices.default":
        dilation = list(args[4]) if len(args) > 4 else [1, 1]
        ceil = bool(args[5]) if len(args) > 5 else False
        return helper.make_node("MaxPool", [x], ["y"], kernel_shape=kernel, strides=stride, pads=pad * 2,
                                dilations=dilation, ceil_mode=int(ceil))
    ceil = bool(args[4]) if len(args) > 4 else False
    include_pad = bool(args[5]) if len(args) > 5 else True
    return helper.make_node("AveragePool", [x], ["y"], kernel_shape=kernel, strides=stride, pads=pad * 2,
                            ceil_mode=int(ceil), count_include_pad=int(include_pad))


def _quantizer(x: str, quantized: str, dequantized: str, inits: list) -> list:
    """The quantize-dequantize pair of NNCF's quantizer on the edge ``x`` (per tensor, u8), its scale
    added to ``inits`` once per kernel."""
    import numpy as np
    from onnx import helper, numpy_helper

    if not any(t.name == "x_scale" for t in inits):
        inits += [numpy_helper.from_array(np.array(4 / 127, np.float32), "x_scale"),  # inputs drawn from N(0, 1)
                  numpy_helper.from_array(np.array(128, np.uint8), "x_zero")]
    return [helper.make_node("QuantizeLinear", [x, "x_scale", "x_zero"], [quantized]),
            helper.make_node("DequantizeLinear", [quantized, "x_scale", "x_zero"], [dequantized])]


def _quantize(node, inits: list, weights: bool) -> list:
    """``node`` with its activations quantized and dequantized (QDQ, as OpenVINO reads a quantized model
    and runs the node in int8): per tensor in u8; with ``weights`` (a convolution or a linear layer:
    its input, then its weights), the weights per output channel in s8."""
    import numpy as np
    from onnx import helper, numpy_helper

    nodes, constant = [], {t.name for t in inits}
    for j, x in enumerate(node.input[:1] if weights else node.input):
        if x in constant:  # an argument (a mean's axes), not an activation
            continue
        nodes += _quantizer(x, f"quantized{j}", f"dequantized{j}", inits)
        node.input[j] = f"dequantized{j}"
    if weights:
        w = node.input[1]
        at = next(i for i, t in enumerate(inits) if t.name == w)
        values = numpy_helper.to_array(inits[at])
        scale = np.abs(values.reshape(len(values), -1)).max(axis=1).astype(np.float32) / 127 + 1e-12
        inits[at] = numpy_helper.from_array(
            np.clip(np.round(values / scale.reshape(-1, *[1] * (values.ndim - 1))), -127, 127).astype(np.int8), w)
        inits += [numpy_helper.from_array(scale, "w_scale"),
                  numpy_helper.from_array(np.zeros(len(scale), np.int8), "w_zero")]
        nodes.append(helper.make_node("DequantizeLinear", [w, "w_scale", "w_zero"], ["dequantized_w"], axis=0))
        node.input[1] = "dequantized_w"
    return nodes + [node]
