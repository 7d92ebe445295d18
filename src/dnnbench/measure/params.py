"""Parameters: learnable weights of the inference-form model, buffers (BatchNorm statistics) excluded."""

from __future__ import annotations

from torch import nn


def count_params(model: nn.Module) -> int:
    """Number of parameters, each shared parameter counted once (works on the meta device)."""
    return sum(p.numel() for p in model.parameters())
