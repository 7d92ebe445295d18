"""Accuracy counted on labelled images: top-k hits, and the 95% interval of a proportion."""

from __future__ import annotations

import math
import os

Z95 = 1.959963984540054  # the normal quantile of a two-sided 95% interval


def wilson(hits: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of the proportion ``hits / n``, as fractions: unlike the normal
    approximation it stays inside [0, 1] and keeps its coverage near 0% and 100% and for small n."""
    if n <= 0:
        raise ValueError("no images: no interval")
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def topk_hits(logits, labels, ks=(1, 5)) -> dict[int, int]:
    """How many rows of ``logits`` (N x classes) rank their label within the top k, for each k (k
    larger than the number of classes counts every row)."""

    ranked = logits.float().topk(min(max(ks), logits.shape[1]), dim=1).indices
    found = ranked == labels.view(-1, 1)
    return {k: int(found[:, :k].any(dim=1).sum()) for k in ks}


def evaluated_model(model: str, weights: str | None, heads_resized) -> str:
    """The name an evaluation's accuracy is stored and read under. Weights whose classifier head had to
    be resized are a model retrained on other classes: its accuracy is named ``MODEL [FILE]``, as
    `run --weights FILE` names its cells, and never read as the ImageNet model's top-1."""
    if not heads_resized or not weights or model.endswith("]"):
        return model
    return f"{model} [{os.path.basename(weights)}]"
