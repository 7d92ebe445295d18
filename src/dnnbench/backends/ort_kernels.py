"""ONNX Runtime's own kernels, timed one by one: the nn-Meter step for a runtime that fuses.

ONNX Runtime folds normalisations into convolutions and fuses activations and residual additions into
them, so eager kernels summed predict it poorly (their sum ran 1.4x to 8x its time, differently by
model). What it runs as one kernel is timed here as one kernel: each convolution, matrix product,
batched product, softmax, layer norm and fused attention of a profile (`measure.kernels`) becomes a
graph of that one operator, built from the kernel's key (shapes and arguments) and run by an ONNX
Runtime session as the backend runs a model (its threads, all graph optimisations). What it folds
or fuses away (normalisations after a convolution, activations, element-wise additions) is not
timed: a runtime kernel's key is the eager key prefixed with ``onnxruntime|``.
"""

from __future__ import annotations

import json

PREFIX = "onnxruntime|"
_CONV = "aten.convolution.default"
_OPS = {_CONV, "aten.addmm.default", "aten.mm.default", "aten.bmm.default", "aten._softmax.default",
        "aten._safe_softmax.default", "aten.native_layer_norm.default",
        "aten._scaled_dot_product_flash_attention_for_cpu.default"}
_OPSET = 17


def runs(key: str) -> bool:
    """Whether ``key`` (an eager kernel's) is a kernel ONNX Runtime runs as one, and is timed here."""
    name, args, _ = json.loads(key)
    if name not in _OPS or isinstance(args, str):
        return False
    if name == _CONV:  # 2-d, not transposed
        return len(args[0]["T"]) == 4 and not args[6]
    return True


def runtime_key(key: str) -> str:
    return PREFIX + key


def eager_key(key: str) -> str:
    return key.removeprefix(PREFIX)


def by_eager_key(rows: dict) -> dict:
    """The runtime kernels of ``rows`` (a kernel table: {key: row}, eager kernels among them) by their eager keys."""
    return {eager_key(k): row for k, row in rows.items() if k.startswith(PREFIX)}


def replay(key: str, threads: int):
    """A call of the eager kernel ``key`` as ONNX Runtime runs it: a function of no arguments.
    ValueError for a kernel it does not run as one (see `runs`)."""
    import onnxruntime as ort

    from .onnxruntime import session_options  # as the backend runs a model

    model, feeds = _graph(eager_key(key))
    session = ort.InferenceSession(model.SerializeToString(), session_options(threads),
                                   providers=["CPUExecutionProvider"])
    return lambda: session.run(None, feeds)


def _graph(key: str):
    """(an ONNX model of the one operator of ``key``, its inputs as numpy arrays): activations as
    inputs, weights as initialisers (so that the session can pack them, as it packs a model's)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    if not runs(key):
        raise ValueError(f"{json.loads(key)[0]} is not a kernel onnxruntime runs as one")
    name, args, kwargs = json.loads(key)
    rng = np.random.default_rng(0)
    inputs, feeds, inits = [], {}, []

    def activation(spec: dict, label: str) -> str:
        inputs.append(helper.make_tensor_value_info(label, TensorProto.FLOAT, spec["T"]))
        feeds[label] = rng.standard_normal(spec["T"], dtype=np.float32)
        return label

    def weight(spec: dict | None, label: str, transpose: bool = False) -> str:
        if spec is None:
            return ""
        shape = spec["T"][::-1] if transpose else spec["T"]
        inits.append(numpy_helper.from_array(rng.standard_normal(shape, dtype=np.float32) * 0.02, label))
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
    else:  # fused attention: Q K^T scaled, softmax, times V, as ONNX Runtime fuses it
        q, k, v = args[:3]
        scale = kwargs.get("scale") or 1 / float(q["T"][-1]) ** 0.5
        inits.append(numpy_helper.from_array(np.array(scale, dtype=np.float32), "scale"))
        node = [helper.make_node("Transpose", [activation(k, "k")], ["kt"], perm=[0, 1, 3, 2]),
                helper.make_node("MatMul", [activation(q, "q"), "kt"], ["s"]),
                helper.make_node("Mul", ["s", "scale"], ["ss"]),
                helper.make_node("Softmax", ["ss"], ["p"], axis=-1),
                helper.make_node("MatMul", ["p", activation(v, "v")], ["y"])]
    for n in node:  # an absent optional input (a bias) is left out, not named "": ONNX Runtime runs another
        while n.input and not n.input[-1]:  # kernel for an empty name
            n.input.pop()
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(node, "kernel", inputs, [output], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)]), feeds
