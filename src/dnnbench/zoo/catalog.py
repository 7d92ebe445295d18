"""Published accuracy, each figure with the evaluation it comes from.

Sources, in the order they are used for a model:
- torchvision: the ``meta`` of the weights enum in the installed torchvision package (the first,
  ``IMAGENET1K_V1``, weights: the original weights of the architecture);
- timm: timm's own re-evaluation, ``results-imagenet.csv`` (bundled in ``data/``), row of the
  model's default pretrained tag at its native input size;
- pretrainedmodels: Cadene's accuracy table as republished by Bianco et al. 2018 (``data/``);
- otherwise (the architectures written in dnnbench, the user's models): no figure. Accuracy is
  never made up; ``data/SOURCES.md`` records where each bundled table comes from.

Figures are top-1 / top-5 in percent on the ImageNet-1k validation set, single centre crop. The
same weights score a few tenths apart between evaluators (ResNet-50 V1: 76.130 torchvision, 76.156
timm, 76.002 Cadene): ``source`` says which evaluation a figure is.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources

from .registry import ModelEntry

TIMM_RESULTS = "timm results-imagenet.csv (huggingface/pytorch-image-models@4e5207c, 2025-10-30)"
CADENE = ("Cadene/pretrained-models.pytorch accuracy table as republished by Bianco et al. 2018 "
          "(CeLuigi/models-comparison.pytorch@66e1626 README)")


@dataclass(frozen=True)
class Accuracy:
    """Published top-1 and top-5 (%) and the evaluation they come from."""

    top1: float
    top5: float | None
    source: str


def _rows(filename: str) -> list[dict[str, str]]:
    with resources.files("dnnbench.zoo").joinpath("data", filename).open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


@functools.lru_cache(maxsize=None)
def _timm_results() -> dict[tuple[str, int], dict[str, str]]:
    return {(r["model"], int(r["img_size"])): r for r in _rows("timm_results_imagenet.csv")}


@functools.lru_cache(maxsize=None)
def _cadene_by_key() -> dict[str, dict[str, str]]:
    table = {r["pretrainedmodels_key"]: r for r in _rows("bianco2018.csv") if r["top1"]}
    # PolyNet is in Cadene's table but not in Bianco's list.
    for r in _rows("cadene_pretrainedmodels.csv"):
        if r["model"] == "PolyNet" and r["version"] == "Our porting":
            table["polynet"] = {**r, "accuracy_version": r["version"], "input_size": "331"}
    return table


def _torchvision(entry: ModelEntry) -> Accuracy | None:
    import torchvision
    import torchvision.models as tvm

    weights = next(w for w in tvm.get_model_weights(entry.name) if str(w) == entry.weights)
    crop = weights.transforms.keywords.get("crop_size", 224)
    if crop != entry.input_size:
        return None
    metrics = weights.meta["_metrics"]["ImageNet-1K"]
    resize = weights.transforms.keywords.get("resize_size", 256)
    return Accuracy(float(metrics["acc@1"]), float(metrics["acc@5"]),
                    f"torchvision {torchvision.__version__.split('+')[0]} {entry.weights} metadata "
                    f"(ImageNet-1k val, resize {resize}, centre crop {crop})")


def _timm(entry: ModelEntry) -> Accuracy | None:
    row = _timm_results().get((entry.weights, entry.input_size))
    if row is None:
        return None
    return Accuracy(float(row["top1"]), float(row["top5"]),
                    f"{TIMM_RESULTS}: {row['model']} evaluated by timm at {row['img_size']} px, "
                    f"crop_pct {row['crop_pct']}, {row['interpolation']}")


def _pretrainedmodels(entry: ModelEntry) -> Accuracy | None:
    row = _cadene_by_key().get(entry.weights)
    if row is None or int(row.get("input_size") or entry.input_size) != entry.input_size:
        return None
    version = row["accuracy_version"]
    how = {"Our porting": "weights ported to PyTorch and evaluated in PyTorch",
           "Pytorch": "torchvision weights evaluated in PyTorch"}.get(version, version)
    return Accuracy(float(row["top1"]), float(row["top5"]),
                    f"{CADENE}: {version} ({how}), ImageNet-1k val, centre crop {entry.input_size}")


def published_accuracy(entry: ModelEntry) -> Accuracy | None:
    """The published accuracy of ``entry``'s weights at its input size, or ``None`` if none exists."""
    if entry.weights is None:
        return None
    lookup = {"torchvision": _torchvision, "timm": _timm, "pretrainedmodels": _pretrainedmodels}.get(entry.source)
    return lookup(entry) if lookup else None


# -- the figure of the paper a preset reproduces -------------------------------------------------------

# Bianco et al. 2018 evaluated Cadene's pretrainedmodels ports; the registry measures the same
# architectures from torchvision or timm, whose weights may be another training (timm's ResNeXt-101
# 32x4d is the semi-supervised YFCC one, 80.9 against the paper's 78.2). The table's key of each
# registry name that is not the key itself:
_BIANCO_KEYS = {
    "timm/inception_resnet_v2": "inceptionresnetv2", "inception_v3": "inceptionv3", "timm/inception_v4": "inceptionv4",
    "timm/mobilenetv1_100": "mobilenet", "mobilenet_v2": "mobilenetv2", "shufflenet-v1": "shufflenet",
    "timm/legacy_senet154": "senet154", "timm/legacy_seresnet50": "se_resnet50",
    "timm/legacy_seresnet101": "se_resnet101", "timm/legacy_seresnet152": "se_resnet152",
    "timm/legacy_seresnext50_32x4d": "se_resnext50_32x4d", "timm/legacy_seresnext101_32x4d": "se_resnext101_32x4d",
    "timm/legacy_xception": "xception",
}
# beyond this many points from the paper's figure, the weights are another training, not the paper's
PAPER_TOLERANCE = 1.0


@functools.lru_cache(maxsize=None)
def _bianco_by_key() -> dict[str, dict[str, str]]:
    return {r["pretrainedmodels_key"]: r for r in _rows("bianco2018.csv") if r["top1"]}


def paper_accuracy(name: str, input_size: int) -> Accuracy | None:
    """The top-1/top-5 Bianco et al. 2018 report for the architecture of registry name ``name`` at
    ``input_size`` (their table, as republished with their project), or None where the paper has none."""
    key = _BIANCO_KEYS.get(name, name.split("/")[-1])
    row = _bianco_by_key().get(key)
    if row is None or (row.get("input_size") and int(row["input_size"]) != input_size):
        return None
    return Accuracy(float(row["top1"]), float(row["top5"]) if row.get("top5") else None,
                    f"Bianco et al. 2018, {row['model']} ({CADENE})")
