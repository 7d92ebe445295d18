"""A model's profile as data: the kernels one forward pass runs (`measure.kernels` records them) and
the features summed over them. Plain Python, no torch: the analysis reads profiles from the database.

A kernel's key is JSON: ``[operator, arguments, keyword arguments]``, tensors as ``{"T": shape, "d": dtype}``
(with ``"s"``: strides where not contiguous); an argument that cannot be written so makes the
arguments a string (``"unreplayable TYPE"``), and such a kernel is estimated, never timed.

A layer's calls (a convolution, a linear layer) also record their *epilogue*: the element-wise
operators that consume the layer's output, in order, as tags (`EPILOGUE_TAGS`), a normalisation that
folds into the layer's weights passed over. A runtime that fuses them runs them inside the layer's kernel.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

# what may follow a layer in its epilogue: activations, and the addition of another tensor of its shape
# (a residual); "relu6" is a clamp to [0, 6], "gelu_tanh" the tanh approximation of GELU
EPILOGUE_TAGS = ("relu", "relu6", "silu", "gelu", "gelu_tanh", "hardswish", "hardsigmoid", "sigmoid", "add")
KINDS = ("dense_conv", "grouped_conv", "matmul", "attention", "other")
FEATURES = ("macs_dense_conv", "macs_grouped_conv", "macs_matmul", "macs_attention", "activations", "bytes",
            "kernels")


@dataclass(frozen=True)
class KernelSpec:
    """One kernel: its key (operator and arguments, JSON), kind (see KINDS), MACs, elements written
    and bytes read and written (per call)."""

    key: str
    kind: str
    macs: int
    elements: int
    bytes: int

    @property
    def op(self) -> str:
        return json.loads(self.key)[0]


@dataclass
class Profile:
    """A forward pass as kernels: ``calls`` (how many times each kernel runs) and ``specs``, by key;
    ``then``: {a layer's key: Counter of its calls by epilogue, its tags joined by commas}, for calls
    that have one."""

    calls: Counter = field(default_factory=Counter)
    specs: dict = field(default_factory=dict)
    then: dict = field(default_factory=dict)

    def features(self) -> dict[str, float]:
        out = dict.fromkeys(FEATURES, 0.0)
        for key, n in self.calls.items():
            spec = self.specs[key]
            if spec.kind != "other":
                out[f"macs_{spec.kind}"] += n * spec.macs
            out["activations"] += n * spec.elements
            out["bytes"] += n * spec.bytes
            out["kernels"] += n
        return out

    def to_dict(self) -> dict:
        return {"calls": dict(self.calls),
                "specs": {k: [s.kind, s.macs, s.elements, s.bytes] for k, s in self.specs.items()},
                "then": {k: dict(c) for k, c in self.then.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> Profile:
        specs = {k: KernelSpec(k, *v) for k, v in data["specs"].items()}
        return cls(Counter(data["calls"]), specs, {k: Counter(c) for k, c in data.get("then", {}).items()})



def replayable(key: str) -> bool:
    """Whether the kernel ``key`` can be run again from its key (see the module)."""
    return not isinstance(json.loads(key)[1], str)
