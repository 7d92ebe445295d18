"""The images an evaluation reads, their labels, and each model's own preprocessing.

Two layouts: a folder with one sub-folder per class (ImageNet's val set as commonly laid out), or a
folder of images with a labels file (CSV: ``file,label``). A class is named by a WordNet id
(``n01440764``: the model's output in the standard ImageNet-1k order), by an output index (``0`` to
``999``), or by any other name: the user's own classes, mapped by sorted name to outputs 0, 1, ...
as torchvision's ImageFolder does.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff", ".gif", ".jpe")
LABELS_FILE = "labels.csv"
_WNID = re.compile(r"n\d{8}")


@dataclass(frozen=True)
class ImageSet:
    """``samples``: (path, class name) pairs in a stable order; ``classes``: the class names, sorted;
    ``layout``: ``folders`` or the labels file's path."""

    root: str
    samples: tuple[tuple[str, str], ...]
    classes: tuple[str, ...]
    layout: str


def find_images(data: str | os.PathLike, labels: str | os.PathLike | None = None,
                limit: int | None = None) -> ImageSet:
    """The labelled images under ``data``: its ``labels.csv`` (or ``labels``) if there is one, else its
    sub-folders as classes. ``limit``: the first N images, in a fixed order spread over the classes."""
    root = Path(data)
    if not root.is_dir():
        raise UserError(f"--data {root}: no such folder: give a folder of class sub-folders, or of images with a "
                        f"{LABELS_FILE} (file,label)")
    labels_path = Path(labels) if labels else (root / LABELS_FILE if (root / LABELS_FILE).is_file() else None)
    if labels_path is not None:
        samples, layout = _from_labels_file(root, labels_path), str(labels_path)
    else:
        samples, layout = _from_folders(root), "folders"
    if not samples:
        raise UserError(f"--data {root}: no images found (looked for {', '.join(IMAGE_SUFFIXES[:5])}, ... in "
                        f"{'the labels file' if labels_path else 'its class sub-folders'})")
    if limit is not None:
        samples = _spread(samples, limit)
    return ImageSet(str(root.resolve()), tuple(samples), tuple(sorted({c for _, c in samples})), layout)


def _from_folders(root: Path) -> list[tuple[str, str]]:
    samples = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                samples.append((str(path), folder.name))
    return samples


def _from_labels_file(root: Path, path: Path) -> list[tuple[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's byte-order mark
            rows = [r for r in csv.reader(f) if r and any(x.strip() for x in r)]
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"labels file {path} cannot be read: {exc}") from None
    if rows and [x.strip().lower() for x in rows[0][:2]] == ["file", "label"]:
        rows = rows[1:]
    samples = []
    for number, row in enumerate(rows, 1):
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise UserError(f"labels file {path}, row {number}: expected 'file,label', got {','.join(row)!r}")
        samples.append((_inside(root, row[0].strip(), path, number), row[1].strip()))
    return samples


def _inside(root: Path, name: str, path: Path, number: int) -> str:
    """``name`` (a labels file's entry) as a path under ``root``; refused if it leads outside (an
    absolute path or ``..``): the data evaluated is the folder named, nothing else on the disk.
    Checked on the words, not the links: a data folder of symbolic links is fine."""
    joined = os.path.normpath(os.path.join(root, name))
    if os.path.isabs(name) or os.path.commonpath([joined, os.path.normpath(root)]) != os.path.normpath(root):
        raise UserError(f"labels file {path}, row {number}: {name!r} is outside --data {root}: list each image by "
                        "its path inside the data folder (e.g. cats/001.jpg)")
    return joined


def _spread(samples: list, limit: int) -> list:
    """``limit`` samples taken round-robin over the classes (each class's in order), so that a
    limited run sees every class rather than the first few."""
    by_class: dict[str, list] = {}
    for s in samples:
        by_class.setdefault(s[1], []).append(s)
    out, queues = [], [list(v) for _, v in sorted(by_class.items())]
    while len(out) < limit and any(queues):
        for q in queues:
            if q and len(out) < limit:
                out.append(q.pop(0))
    return out


# -- classes to outputs ----------------------------------------------------------------------------


def imagenet_wnids() -> list[str]:
    """The 1000 WordNet ids of ImageNet-1k in the standard output order (timm's bundled list)."""
    from timm.data import ImageNetInfo

    return list(ImageNetInfo().label_names())


def class_mapping(classes, outputs: int) -> tuple[dict[str, int], str]:
    """Each class name's output index for a model with ``outputs`` outputs, and how it was mapped, in
    words. WordNet ids: ImageNet-1k's order; whole numbers: that index; other names: sorted, 0, 1, ...
    A class that fits none of these raises `UserError` naming it."""
    classes = sorted(classes)
    if any(_WNID.fullmatch(c) for c in classes):
        order = {w: i for i, w in enumerate(imagenet_wnids())}
        unknown = [c for c in classes if c not in order]
        if unknown:
            raise UserError(f"classes that are not ImageNet-1k WordNet ids: {', '.join(unknown[:5])}"
                            + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
                            + ": name every class folder by its WordNet id (n01440764), by its output index, or "
                              "use your own class names throughout with weights trained on them")
        if outputs != len(order):
            raise UserError(f"the classes are ImageNet-1k WordNet ids but the model has {outputs} outputs, not "
                            f"{len(order)}: give ImageNet-1k weights, or data labelled by the model's own classes")
        return {c: order[c] for c in classes}, "WordNet ids in ImageNet-1k order"
    if all(c.isdigit() for c in classes):
        beyond = [c for c in classes if int(c) >= outputs]
        if beyond:
            raise UserError(f"class indices {', '.join(beyond[:5])} are beyond the model's {outputs} outputs "
                            f"(0 to {outputs - 1})")
        return {c: int(c) for c in classes}, "output indices"
    if len(classes) != outputs:
        raise UserError(f"{len(classes)} classes of your own ({', '.join(classes[:5])}"
                        f"{', ...' if len(classes) > 5 else ''}) for a model with {outputs} outputs: give --weights "
                        f"of the model retrained on these {len(classes)} classes (its head is resized to the file's), "
                        "or name the folders by WordNet id or output index")
    return {c: i for i, c in enumerate(classes)}, "your own classes, by sorted name (as torchvision's ImageFolder)"


# -- preprocessing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to ``resize`` px, centre-crop ``crop`` px, scale to [0, 1] and normalise
    by ``mean`` and ``std``; ``source``: where these come from."""

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    source: str

    def to_dict(self) -> dict:
        return asdict(self)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CROP_PCT = 0.875  # 224 of 256


def preprocessing(entry, model, input_size: int | None = None, crop_pct: float | None = None) -> Preprocess:
    """The model's own preprocessing (its torchvision weights' transforms, its timm pretrained
    configuration, its pretrainedmodels settings; else ImageNet's usual resize 256 / crop 224), with
    ``input_size`` (the crop) and ``crop_pct`` (crop over resize) overriding it."""
    base = _torchvision(entry) or _timm(model) or _pretrainedmodels(entry) or Preprocess(
        round(entry.input_size / DEFAULT_CROP_PCT), entry.input_size, IMAGENET_MEAN, IMAGENET_STD, "bilinear",
        f"ImageNet defaults (crop {DEFAULT_CROP_PCT:g} of the resized side, ImageNet mean and std)")
    if input_size is None and crop_pct is None:
        return base
    crop = input_size or base.crop
    pct = crop_pct or base.crop / base.resize
    overrides = ", ".join(x for x in (f"--input-size {input_size}" if input_size else "",
                                      f"--crop-pct {crop_pct}" if crop_pct else "") if x)
    return Preprocess(int(crop / pct), crop, base.mean, base.std, base.interpolation,
                      f"{base.source}, with {overrides}")


def _torchvision(entry) -> Preprocess | None:
    if entry.source != "torchvision" or not entry.weights:
        return None
    import torchvision.models as tvm

    weights = next((w for w in tvm.get_model_weights(entry.name) if str(w) == entry.weights), None)
    if weights is None:
        return None
    kw = weights.transforms.keywords
    interpolation = kw.get("interpolation")
    return Preprocess(kw.get("resize_size", 256), kw.get("crop_size", 224), tuple(kw.get("mean", IMAGENET_MEAN)),
                      tuple(kw.get("std", IMAGENET_STD)), getattr(interpolation, "value", "bilinear"),
                      f"torchvision {entry.weights} transforms")


def _timm(model) -> Preprocess | None:
    cfg = getattr(model, "pretrained_cfg", None)
    if not cfg:
        return None
    from timm.data import resolve_data_config

    data = resolve_data_config({}, model=model, use_test_size=True)  # the size timm evaluates at
    crop = data["input_size"][-1]
    return Preprocess(int(crop / data["crop_pct"]), crop, tuple(data["mean"]), tuple(data["std"]),
                      data.get("interpolation", "bicubic"), f"timm pretrained configuration of {cfg.get('tag') or cfg.get('architecture')}")


def _pretrainedmodels(entry) -> Preprocess | None:
    if entry.source != "pretrainedmodels" or not entry.weights:
        return None
    import pretrainedmodels

    settings = pretrainedmodels.pretrained_settings.get(entry.weights, {}).get("imagenet")
    if not settings:
        return None
    crop = settings["input_size"][-1]
    return Preprocess(int(crop / DEFAULT_CROP_PCT), crop, tuple(settings["mean"]), tuple(settings["std"]), "bilinear",
                      f"pretrainedmodels settings of {entry.weights} (crop {DEFAULT_CROP_PCT:g})")


class ImageDataset:
    """The images of ``samples`` (path, output index), preprocessed; an image that cannot be read or
    decoded is returned as None with its reason, for the loader to count (never dropped silently)."""

    def __init__(self, samples, preprocess: Preprocess):
        self.samples = list(samples)
        self.pre = preprocess

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        import torch
        from PIL import Image, UnidentifiedImageError
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as F

        path, label = self.samples[i]
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            # a decompression bomb (a small file whose header claims billions of pixels) is one bad image
            first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            return None, label, f"{os.path.basename(path)}: {first}"
        x = F.pil_to_tensor(image)
        x = F.resize(x, [self.pre.resize], interpolation=InterpolationMode(self.pre.interpolation), antialias=True)
        x = F.center_crop(x, [self.pre.crop])
        x = F.to_dtype(x, torch.float32, scale=True)
        return F.normalize(x, list(self.pre.mean), list(self.pre.std)), label, None


def collate(items):
    """A batch of the readable images, their labels, and the reasons of those that could not be read."""
    import torch

    good = [(x, y) for x, y, _ in items if x is not None]
    bad = [why for x, _, why in items if x is None]
    if not good:
        return None, None, bad
    return torch.stack([x for x, _ in good]), torch.tensor([y for _, y in good]), bad
