"""ONNX Runtime's layout reorders, derived from a model's eager dataflow: do they match the runtime's own
graph, what do they cost, and what would adding them do to `predict`'s runtime method?

On the CPU, ONNX Runtime runs a convolution in a blocked layout (NCHWc: channels in blocks of 8 with
AVX2, 16 with AVX-512) and keeps a chain of convolutions, pools, activations, residual additions and
aligned concatenations in it. Where a tensor leaves the chain (a squeeze-and-excitation's mean and
gate product, a layer norm, a channel shuffle's reshape, a transpose), the runtime inserts a
ReorderOutput node, and a ReorderInput where it comes back. The runtime method's kernels leave these
reorders out on purpose (`backends.runtime_kernels._ORT_AROUND`: a one-operator graph's reorders are
not the model's), so a model with many of them is predicted short.

For each model and batch size this script

1. records the eager forward pass as dataflow (which kernel wrote each tensor a kernel reads) and
   derives the reorders ONNX Runtime's NCHWc transformer would insert (`derive`: its rules, as its
   source and the runtime's own graphs of 36 models show them);
2. exports the model, lets ONNX Runtime optimise it as the backend does, and counts the reorder nodes
   of the optimised graph: the derivation's check;
3. times each distinct reorder alone (a one-node graph of the runtime's ``com.microsoft.nchwc`` domain,
   its profiler's node time, the median of the calls after three).

With ``--dump`` (written by ``predict_accuracy.py --dump`` on a database of this setup), it also
calibrates the runtime method with and without the derived reorders' times added to each model's
kernel sum, and prints both methods' errors on the models outside the calibration.

    .venv/bin/python benchmarks/ort_reorders.py --models resnet18,efficientnet_b0,... --batch-sizes 1,16
        [--dump predict_accuracy.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
from torch.utils.weak import WeakIdKeyDictionary  # noqa: E402

from dnnbench.measure.ops import MacCounter  # noqa: E402

INPUT, CONSTANT = -2, -1  # producers of a tensor no kernel of the pass wrote: the model's input, a weight
CHANNEL_ALIGNMENT = 4  # a convolution's channels ONNX Runtime pads up to its block (1.32: 116 and 20 are; 10 is not)
_KEEPS = {"relu", "relu_", "hardtanh", "hardtanh_", "silu", "silu_", "sigmoid", "sigmoid_", "tanh", "tanh_",
          "gelu", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "detach", "alias", "clone",
          "_native_batch_norm_legit_no_training", "native_batch_norm"}  # element-wise: stays blocked


class FlowRecorder(MacCounter):
    """Every operator of a forward pass as [operator, producers of its tensor arguments (entry
    indices, `INPUT` or `CONSTANT`), its output's shape, its arguments' shapes, permute's order, groups]."""

    def __init__(self):
        super().__init__()
        self.flow: list = []
        self.made = WeakIdKeyDictionary()

    def executed(self, func, args, kwargs, out, macs) -> None:
        name = func.overloadpacket.__name__
        producers: list[int] = []

        def walk(value):
            if isinstance(value, torch.Tensor):
                producers.append(self.made.get(value, CONSTANT))
            elif isinstance(value, (list, tuple)):
                for v in value:
                    walk(v)

        walk(args)
        first = out[0] if isinstance(out, (list, tuple)) and out else out
        shapes = [list(a.shape) if isinstance(a, torch.Tensor) else None for a in args[:3]]
        self.flow.append([name, producers, list(first.shape) if isinstance(first, torch.Tensor) else None, shapes,
                          [int(d) for d in args[1]] if name == "permute" else
                          [int(args[1]) if len(args) > 1 else 0] if name == "cat" else None,
                          # a transposed convolution (groups 0) is not one the runtime blocks
                          (0 if args[6] else int(args[8])) if name == "convolution" and len(args) > 8 else 1])
        for o in out if isinstance(out, (list, tuple)) else [out]:
            if isinstance(o, torch.Tensor):
                self.made[o] = len(self.flow) - 1


def record(model, example) -> list:
    with torch.no_grad(), FlowRecorder() as recorder:
        recorder.made[example] = INPUT
        model(example)
    return recorder.flow


def _convolution_takes_blocks(weight: list, groups: int, block: int) -> tuple[bool, bool]:
    """(runs blocked, reorders its input) of a 2-d convolution of ``weight`` [O, I/groups, kh, kw]."""
    out, per_group = weight[0], weight[1]
    if groups < 1:  # transposed
        return False, False
    if groups > 1:
        if out % CHANNEL_ALIGNMENT:
            return False, False
        depthwise = per_group == 1 and out == groups
        return depthwise or not (per_group % block or out % groups or (out // groups) % block), True
    if per_group < block:
        return True, False  # reads the plain layout directly: its input is not reordered
    return per_group % CHANNEL_ALIGNMENT == 0, True


def derive(flow: list, block: int) -> list[tuple[str, tuple, int]]:
    """The reorders ONNX Runtime's NCHWc transformer inserts in the model ``flow`` recorded:
    [("in" | "out", the plain tensor's shape, channels last)], one per tensor however many read it."""
    readers = collections.Counter(j for entry in flow for j in entry[1])
    blocked: dict[int, int] = {}  # entry -> its channels, where its output is blocked
    constant, plain_readers, reordered, nhwc, found = set(), set(), set(), {}, []

    def leaves(j):
        if j in blocked:
            plain_readers.add(j)

    for i, (name, producers, shape, shapes, order, groups) in enumerate(flow):
        source = producers[0] if producers else CONSTANT
        if all(j == CONSTANT or j in constant for j in producers):
            constant.add(i)  # a weight's view, a constant's product
            continue
        if name == "convolution" and shapes[1] and len(shapes[1]) == 4:
            runs, reorders_input = _convolution_takes_blocks(shapes[1], groups, block)
            if runs:
                if not reorders_input:
                    leaves(source)
                elif source not in blocked and source not in reordered:
                    reordered.add(source)  # a transpose from channels-last fuses into the reorder
                    found.append(("in", tuple(nhwc[source]), 1) if source in nhwc else
                                 ("in", tuple(shapes[0]), 0))
                blocked[i] = shapes[1][0]
                continue
        elif name in ("max_pool2d_with_indices", "avg_pool2d") and len(shapes[0] or []) == 4 \
                and shapes[0][1] % block == 0:
            if source not in blocked and source not in reordered:
                reordered.add(source)
                found.append(("in", tuple(shapes[0]), 0))
            blocked[i] = shapes[0][1]
            continue
        elif name in _KEEPS and source in blocked:
            blocked[i] = blocked[source]
            continue
        elif name in ("add", "add_", "mul", "mul_") and len(producers) == 2:
            both = all(j in blocked for j in producers) and shapes[0] == shapes[1]
            on = [j for j in producers if j in blocked]
            folds = len(on) == 1 and any(j == CONSTANT or j in constant for j in producers) \
                and flow[on[0]][0] == "convolution"  # a per-channel scale or bias folds into the layer
            if both or folds:
                blocked[i] = blocked[on[0]]
                continue
        elif name == "cat" and producers and len(shape or []) == 4 and order[0] in (1, -3) \
                and all(j in blocked and blocked[j] % block == 0 for j in producers):
            blocked[i] = sum(blocked[j] for j in producers)
            continue
        elif name == "permute" and source in blocked and order == [0, 2, 3, 1]:
            found.append(("out", tuple(shape), 1))  # the transpose to channels-last is the reorder itself
            continue
        elif name == "permute" and source not in blocked and order == [0, 3, 1, 2] and readers[i] == 1:
            nhwc[i] = shapes[0]  # the channels-last tensor the transpose reads
        for j in producers:
            leaves(j)
    leaves(len(flow) - 1)  # the model's output
    return found + [("out", tuple(flow[j][2]), 0) for j in sorted(plain_readers)]


def block_size() -> int:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return 16 if " avx512f" in flags else 8


def runtime_graph(model, example) -> list[tuple[str, tuple, int]]:
    """The reorder nodes of ONNX Runtime's optimised graph of ``model``, as `derive` gives them."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, shape_inference

    from dnnbench.backends.onnx_export import export_onnx
    from dnnbench.backends.onnxruntime import session_options

    with tempfile.TemporaryDirectory(prefix="dnnbench-reorders-") as name:
        folder = Path(name)
        export_onnx(model, example, folder / "m.onnx", "onnx")
        options = session_options(2)
        options.optimized_model_filepath = str(folder / "opt.onnx")
        ort.InferenceSession(str(folder / "m.onnx"), options, providers=["CPUExecutionProvider"])
        inferred = shape_inference.infer_shapes(onnx.load(folder / "m.onnx")).graph
        optimised = onnx.load(folder / "opt.onnx").graph
    shapes = {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
              for v in [*inferred.value_info, *inferred.input, *inferred.output]}
    found = []
    for node in optimised.node:
        if node.op_type in ("ReorderInput", "ReorderOutput"):
            last = {a.name: helper.get_attribute_value(a) for a in node.attribute}.get("channels_last", 0)
            plain = node.input[0] if node.op_type == "ReorderInput" else node.output[0]
            shape = shapes.get(plain, ())
            found.append(("in" if node.op_type == "ReorderInput" else "out",
                          (example.shape[0], *shape[1:]) if len(shape) == 4 else (), int(last)))
    return found


def time_reorder(kind: str, shape: tuple, last: int, block: int) -> float:
    """Seconds of one reorder alone, by ONNX Runtime's profiler."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from dnnbench.backends.onnxruntime import session_options

    channels = shape[3] if last else shape[1]
    spatial = list(shape[1:3] if last else shape[2:4])
    padded = [shape[0], -(-channels // block) * block, *spatial]
    attributes = {"channels_last": last} if kind == "in" else {"channels": channels, "channels_last": last}
    given, made = (list(shape), padded) if kind == "in" else (padded, list(shape))
    node = helper.make_node("ReorderInput" if kind == "in" else "ReorderOutput", ["x"], ["y"],
                            domain="com.microsoft.nchwc", **attributes)
    graph = helper.make_graph([node], "reorder", [helper.make_tensor_value_info("x", TensorProto.FLOAT, given)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, made)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20),
                                                    helper.make_opsetid("com.microsoft.nchwc", 1)])
    with tempfile.TemporaryDirectory(prefix="dnnbench-reorders-") as folder:
        options = session_options(2)
        options.enable_profiling, options.profile_file_prefix = True, f"{folder}/profile"
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        x = np.random.rand(*given).astype(np.float32)
        for _ in range(40 if shape[0] == 1 else 15):
            session.run(None, {"x": x})
        with open(session.end_profiling()) as f:
            events = json.load(f)
    return statistics.median([e["dur"] * 1e-6 for e in events if e.get("cat") == "Node"
                              and e["name"].endswith("_kernel_time")][3:])


def refit(dump: dict, added: dict) -> None:
    """The runtime method on ``dump`` (one batch size's), without and with ``added`` seconds per model."""
    from dnnbench.analysis import predictor
    from dnnbench.backends import runtime_kernels

    times = dump.get("runtime")
    if not times:
        print("  the dump holds no runtime kernel times (not an onnxruntime setup): no refit")
        return
    if missing := sorted((set(dump["calibrating"]) | set(dump["targets"])) - set(added)):
        raise SystemExit(f"the dump's models {', '.join(missing)} are not among --models: give them all")
    fits = predictor.kernel_fits(times, predictor.specs_of(dump["profiles"].values(), runtime_kernels.kernels))
    for label, extra in (("runtime", {}), ("runtime + reorders", added)):
        def point(model):
            found = predictor.features(dump["profiles"][model], times, fits, runtime_kernels.kernels)
            found["kernel_s"] += extra.get(model, 0.0)
            return found

        calibration = predictor.calibrate([predictor.Point(m, point(m), dump["measured"][m])
                                           for m in dump["calibrating"]], "runtime")
        errors = {m: predictor.predict_point(calibration, point(m)).latency_s / dump["measured"][m] - 1
                  for m in dump["targets"]}
        absolute = sorted(abs(e) for e in errors.values())
        rms = math.sqrt(statistics.fmean(math.log1p(e) ** 2 for e in errors.values()))
        loo = math.sqrt(statistics.fmean(math.log1p(e) ** 2 for e in calibration.loo_errors.values()))
        print(f"  {label:20s} within ±10% {sum(e <= 0.10 for e in absolute) / len(absolute):4.0%}, ±20% "
              f"{sum(e <= 0.20 for e in absolute) / len(absolute):4.0%}, median ±{statistics.median(absolute):.1%}, "
              f"worst ±{absolute[-1]:.0%}, rms log error {rms:.3f} ({len(absolute)} models; leave-one-out on the "
              f"calibration {loo:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="registry names, comma-separated")
    parser.add_argument("--batch-sizes", default="1,16")
    parser.add_argument("--dump", type=Path, help="predict_accuracy.py's dump of this setup: refit with the reorders")
    args = parser.parse_args()
    from dnnbench.zoo import get

    block, dump = block_size(), json.loads(args.dump.read_text()) if args.dump else None
    print(f"NCHWc block: {block} channels")
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        alone, added, agree, names = {}, {}, 0, args.models.split(",")
        for name in names:
            entry = get(name, None)
            model = entry.build("cpu").eval()
            example = torch.randn(batch, 3, entry.input_size, entry.input_size)
            derived = derive(record(model, example), block)
            graph = runtime_graph(model, example)
            mine = collections.Counter(r for r in derived)
            theirs = collections.Counter(graph)  # a reorder of unresolved shape counts as a disagreement
            agree += mine == theirs
            for r in derived:
                if r not in alone:
                    alone[r] = time_reorder(*r, block)
            added[name] = sum(alone[r] for r in derived)
            print(f"batch {batch:2d} {name:30s} reorders: derived {len(derived):3d}, the runtime's {len(graph):3d}"
                  f"{'' if mine == theirs else ' (differ: ' + str(dict((mine - theirs) + (theirs - mine))) + ')'}; "
                  f"{added[name] * 1e3:.3f} ms alone", flush=True)
        print(f"batch {batch}: derived = the runtime's graph for {agree} of {len(names)} models")
        if dump and str(batch) in dump:
            refit(dump[str(batch)], added)


if __name__ == "__main__":
    main()
