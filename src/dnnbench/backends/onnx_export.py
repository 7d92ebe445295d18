"""The ONNX file that onnxruntime and OpenVINO both run: one exporter, so that the two runtimes are
compared on the same graph."""

from __future__ import annotations

from pathlib import Path

import torch

from .base import require

INPUT, OUTPUT = "input", "logits"
# protobuf caps one file at 2 GiB: larger models keep their weights in a file beside it
INLINE_LIMIT_BYTES = 1 << 30


def export_onnx(model, example, path: Path, extra: str) -> Path:
    """``model`` written to ``path`` as ONNX with a dynamic batch axis, by torch's exporter (the
    torch.export-based one, PyTorch 2.14's default; the TorchScript one is deprecated).
    ``extra``: the pip extra to name if onnx or onnxscript is missing."""
    require("onnx", extra)
    require("onnxscript", extra)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    # batch 2 in the trace: an example of batch 1 would fix the batch axis to 1
    sample = example[:1].expand(2, *example.shape[1:]).contiguous()
    with torch.no_grad():
        torch.onnx.export(model, (sample,), str(path), dynamo=True, verbose=False, input_names=[INPUT],
                          output_names=[OUTPUT], dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                          external_data=weights > INLINE_LIMIT_BYTES)
    return path


def onnx_files(path: Path) -> list[Path]:
    """The ONNX model at ``path`` and the files of weights it keeps beside it (external data)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    beside = {entry.value for t in model.graph.initializer for entry in t.external_data if entry.key == "location"}
    return [path, *(path.parent / name for name in sorted(beside))]
