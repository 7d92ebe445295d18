"""The static figures of a model: everything known without timing it.

params, macs, flops (= 2 x macs), file_size (bytes as safetensors), input_size (px), published
top1/top5 (%) with accuracy_source, accuracy_density (top-1 % per million parameters). The model
is built on the meta device, so this takes well under a second per model and no memory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..zoo.catalog import paper_accuracy, published_accuracy
from ..zoo.registry import ModelEntry
from .filesize import safetensors_size
from .ops import count_macs
from .params import count_params


@dataclass(frozen=True)
class StaticFigures:
    """A model's figures known without timing it: ``params`` (count, buffers excluded), ``macs`` and
    ``flops`` (= 2 x macs) of one image at ``input_size`` (px, the side of the square input),
    ``file_size`` (bytes of its fp32 state dict as safetensors), the published ImageNet-1k ``top1`` and
    ``top5`` (%) of its weights with their ``accuracy_source`` (None where none is published), and
    ``accuracy_density`` (top-1 % per million parameters); ``measured_top1``/``measured_top5`` (%) where
    `dnnbench eval` measured them in eager fp32, with ``measured_source``; ``paper_top1`` (%): Bianco et
    al. 2018's figure for the architecture, with ``paper_source``, where the paper has one."""

    name: str
    family: str
    source: str
    params: int
    macs: int
    flops: int
    file_size: int
    input_size: int
    top1: float | None
    top5: float | None
    accuracy_source: str | None
    accuracy_density: float | None
    # top-1/top-5 that `dnnbench eval` measured in eager fp32 (``inspect --db``), beside the published
    measured_top1: float | None = None
    measured_top5: float | None = None
    measured_source: str | None = None
    # the top-1 the paper a preset reproduces gives for this architecture (Bianco et al. 2018), beside
    paper_top1: float | None = None
    paper_source: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def static_figures(entry: ModelEntry) -> StaticFigures:
    """Count ``entry``'s static figures on the meta device, at its input size, batch size 1."""
    model = entry.build("meta")
    example = torch.empty(1, 3, entry.input_size, entry.input_size, device="meta")
    macs = count_macs(model, example).macs
    params = count_params(model)
    accuracy = published_accuracy(entry)
    top1 = accuracy.top1 if accuracy else None
    paper = paper_accuracy(entry.base or entry.name, entry.input_size)
    return StaticFigures(
        name=entry.name, family=entry.family, source=entry.source,
        params=params, macs=macs, flops=2 * macs, file_size=safetensors_size(model), input_size=entry.input_size,
        top1=top1, top5=accuracy.top5 if accuracy else None,
        accuracy_source=accuracy.source if accuracy else None,
        accuracy_density=(top1 / (params / 1e6)) if top1 is not None and params else None,
        paper_top1=paper.top1 if paper else None, paper_source=paper.source if paper else None,
    )
