"""The model registry: every name dnnbench accepts, and how to build each model in inference form.

Names:
- every torchvision classification model under its torchvision name (``resnet50``);
- every timm model as ``timm/<name>`` (``timm/inception_v4``);
- models only Cadene's ``pretrainedmodels`` package ships as ``pretrainedmodels/<key>``;
- the architectures written here (``bn-alexnet``, ``bn-nin``, ``enet``, ``shufflenet-v1``);
- the papers' names as aliases (``vgg-16``, ``inception-v4``, ``nasnet-a-mobile``); case, ``-``,
  ``_``, ``.`` and spaces do not matter (``VGG_16``, ``squeezenet-1.0``);
- the user's own models, ``path/to/file.py:function`` or ``package.module:function``, a function
  that returns an ``nn.Module`` (input size from ``input_size``, default 224).

Models are built in inference form: eval mode, no auxiliary heads, random weights unless loaded
later. Building never downloads anything.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
import os
import re
import sys
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import UserError
from . import weights as _weights

SOURCES = ("torchvision", "timm", "pretrainedmodels", "dnnbench", "user")


@dataclass(frozen=True)
class ModelEntry:
    """One model of the zoo: its name, where it comes from, its native input size, how to build it.

    ``weights`` names the published weights that the catalogue's accuracy refers to
    (a torchvision enum, a timm ``name.tag``, a pretrainedmodels key), or ``None``.
    """

    name: str
    family: str
    source: str
    input_size: int
    builder: Callable[[], nn.Module] = field(repr=False, compare=False)
    weights: str | None = None
    note: str = ""
    # the user's weights (``--weights``): the file, and the registry name the entry was made from
    weights_file: str | None = None
    base: str | None = None

    def build(self, device: str | torch.device = "cpu", randomize: bool = True) -> nn.Module:
        """The model in eval mode on ``device``; ``meta`` builds shapes only (nothing allocated)."""
        return build(self, device, randomize)


# --------------------------------------------------------------------------------------------
# families

_FAMILIES = [
    (r"alexnet", "AlexNet"), (r"vgg", "VGG"), (r"googlenet|bninception|bn-inception", "Inception"),
    (r"inception_resnet|inceptionresnet", "Inception-ResNet"), (r"inception", "Inception"),
    (r"xception", "Xception"), (r"densenet", "DenseNet"),  # before SENet: "den-senet"
    (r"senet|seresnext|se_resnext|seresnet|se_resnet", "SENet"),
    (r"resnext", "ResNeXt"), (r"wide_resnet", "Wide ResNet"), (r"resnetv2", "ResNet-v2"),
    (r"resnet", "ResNet"), (r"densenet", "DenseNet"), (r"dpn", "DPN"), (r"squeezenet", "SqueezeNet"),
    (r"shufflenet", "ShuffleNet"), (r"mobilenetv1|mobilenet-v1", "MobileNet"),
    (r"mobilenet|mobilenetv", "MobileNet"), (r"mnasnet", "MNASNet"), (r"ghostnet", "GhostNet"),
    (r"efficientnet", "EfficientNet"), (r"regnet", "RegNet"), (r"convnext", "ConvNeXt"),
    (r"pnasnet", "PNASNet"), (r"nasnet", "NASNet"), (r"polynet", "PolyNet"), (r"swin", "Swin"),
    (r"maxvit", "MaxViT"), (r"vit_|deit|eva", "ViT"), (r"nin", "NIN"), (r"enet", "ENet"),
]


def family_of(name: str) -> str:
    base = name.split("/")[-1].lower()
    for pattern, family in _FAMILIES:
        if re.search(pattern, base):
            return family
    return base.split("_")[0].split("-")[0]


# --------------------------------------------------------------------------------------------
# builders


def _torchvision_builder(name: str, size: int) -> Callable[[], nn.Module]:
    def build():
        import torchvision.models as tvm

        kwargs = {}
        if name in ("googlenet", "inception_v3"):
            # inference form: the auxiliary classifiers only exist for training
            kwargs = {"aux_logits": False, "init_weights": False}
        if name.startswith("vit_"):  # the position embedding is sized for one image size
            kwargs = {"image_size": size}
        return tvm.get_model(name, weights=None, **kwargs)

    return build


def _timm_builder(name: str, size: int | None) -> Callable[[], nn.Module]:
    def build():
        import timm

        if size is None:
            return timm.create_model(name, pretrained=False)
        try:  # transformers are built for one image size; convolutional nets take any
            return timm.create_model(name, pretrained=False, img_size=size)
        except TypeError:
            return timm.create_model(name, pretrained=False)

    return build


def _pretrainedmodels_builder(key: str) -> Callable[[], nn.Module]:
    def build():
        pm = _import_pretrainedmodels()
        return pm.__dict__[key](num_classes=1000, pretrained=None)

    return build


def _native_builder(module: str, function: str) -> Callable[[], nn.Module]:
    def build():
        return getattr(importlib.import_module(f"dnnbench.zoo.nets.{module}"), function)()

    return build


def _import_pretrainedmodels():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pretrainedmodels
    return pretrainedmodels


def build(entry: ModelEntry, device: str | torch.device = "cpu", randomize: bool = True) -> nn.Module:
    """Build ``entry`` in eval mode on ``device`` with cheap random weights (see ``weights``).

    On ``meta`` the model is constructed directly on the meta device; a model whose constructor
    computes on tensors (RegNet derives its widths with torch ops) is built on the CPU with its
    initialisation skipped, which touches no memory, and moved to meta.
    """
    device = torch.device(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if device.type == "meta":
            try:
                with torch.device("meta"), _weights.skip_init():
                    model = entry.builder()
            except (NotImplementedError, RuntimeError):
                with _weights.skip_init():
                    model = entry.builder()
                model = model.to("meta")
        else:
            with _weights.skip_init():
                model = entry.builder()
            if randomize:
                _weights.randomize_(model)
            model = model.to(device)
    if not isinstance(model, nn.Module):
        raise UserError(f"model {entry.name!r}: its builder returned {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


# --------------------------------------------------------------------------------------------
# the registry

_NATIVE = {
    "bn-alexnet": ("bn_alexnet", "bn_alexnet", 224, "AlexNet"),
    "bn-nin": ("bn_nin", "bn_nin", 224, "NIN"),
    "enet": ("enet", "enet", 224, "ENet"),
    "shufflenet-v1": ("shufflenet_v1", "shufflenet_v1", 224, "ShuffleNet"),
}

# The papers' names for models the libraries name otherwise.
ALIASES = {
    "vgg-16": "vgg16", "vgg-19": "vgg19", "vgg-11": "vgg11", "vgg-13": "vgg13",
    "inception-v4": "timm/inception_v4", "inception-resnet-v2": "timm/inception_resnet_v2",
    "xception": "timm/legacy_xception", "mobilenet-v1": "timm/mobilenetv1_100", "mobilenet": "timm/mobilenetv1_100",
    "mobilenet-v2": "mobilenet_v2", "shufflenet": "shufflenet-v1", "shufflenet-v2": "shufflenet_v2_x1_0",
    "nasnet-a-large": "timm/nasnetalarge", "nasnet-a-mobile": "pretrainedmodels/nasnetamobile",
    "pnasnet-5-large": "timm/pnasnet5large", "polynet": "pretrainedmodels/polynet",
    "bn-inception": "pretrainedmodels/bninception", "fbresnet-152": "pretrainedmodels/fbresnet152",
    "fb-resnet-152": "pretrainedmodels/fbresnet152", "caffe-resnet-101": "pretrainedmodels/cafferesnet101",
    "senet-154": "timm/legacy_senet154", "se-resnet-50": "timm/legacy_seresnet50",
    "se-resnet-101": "timm/legacy_seresnet101", "se-resnet-152": "timm/legacy_seresnet152",
    "se-resnext-50-32x4d": "timm/legacy_seresnext50_32x4d", "se-resnext-101-32x4d": "timm/legacy_seresnext101_32x4d",
    "resnext-101-32x4d": "timm/resnext101_32x4d", "resnext-101-64x4d": "resnext101_64x4d",
    "dpn-68": "timm/dpn68", "dpn-92": "timm/dpn92", "dpn-98": "timm/dpn98", "dpn-107": "timm/dpn107",
    "dpn-131": "timm/dpn131", "squeezenet-1.0": "squeezenet1_0", "squeezenet-1.1": "squeezenet1_1",
    "resnet-50-v2": "timm/resnetv2_50", "resnet-101-v2": "timm/resnetv2_101", "resnet-152-v2": "timm/resnetv2_152",
    "ghostnet": "timm/ghostnet_100",
}
for _depth in (18, 34, 50, 101, 152):
    ALIASES[f"resnet-{_depth}"] = f"resnet{_depth}"
for _depth in (121, 161, 169, 201):
    ALIASES[f"densenet-{_depth}"] = f"densenet{_depth}"
for _i in range(8):
    ALIASES[f"efficientnet-b{_i}"] = f"efficientnet_b{_i}"


def _key(name: str) -> str:
    """Loose form of a name for alias matching: lower case, no separators (``VGG_16`` -> ``vgg16``)."""
    return re.sub(r"[\s_\-.]", "", name.lower())


@functools.lru_cache(maxsize=None)
def _torchvision_names() -> tuple[str, ...]:
    import torchvision.models as tvm

    return tuple(tvm.list_models(module=tvm))


@functools.lru_cache(maxsize=None)
def _timm_names() -> frozenset[str]:
    import timm

    return frozenset(timm.list_models())


@functools.lru_cache(maxsize=None)
def _pretrainedmodels_names() -> tuple[str, ...]:
    return tuple(_import_pretrainedmodels().pretrained_settings)


def _torchvision_entry(name: str, input_size: int | None) -> ModelEntry:
    import torchvision.models as tvm

    weights = list(tvm.get_model_weights(name))
    first = weights[0]  # IMAGENET1K_V1 where it exists: the original weights of the architecture
    size = int(input_size or first.transforms.keywords.get("crop_size", 224))
    return ModelEntry(name, family_of(name), "torchvision", size, _torchvision_builder(name, size), weights=str(first))


def _timm_entry(arch: str, input_size: int | None) -> ModelEntry:
    import timm

    # timm's default weights of the architecture (its first tag in the model's own list, as
    # timm.create_model(pretrained=True) loads them; list_pretrained is alphabetical and picked e.g.
    # inception_resnet_v2's adversarial ensemble), evaluated at the size timm tests them at (its
    # results tables): the accuracy and the operations then belong to one input
    cfg = timm.get_pretrained_cfg(arch)
    train = int(cfg.input_size[-1]) if cfg is not None else 224
    native = int(cfg.test_input_size[-1]) if cfg is not None and cfg.test_input_size else train
    size = int(input_size or native)
    if cfg is not None and cfg.tag:
        weights = f"{arch}.{cfg.tag}"
    else:
        tags = timm.list_pretrained(f"{arch}.*")
        weights = tags[0] if tags else None
    return ModelEntry(f"timm/{arch}", family_of(arch), "timm", size,
                      _timm_builder(arch, size if size != train else None), weights=weights)


def _pretrainedmodels_entry(key: str) -> ModelEntry:
    settings = _import_pretrainedmodels().pretrained_settings[key]
    size = int(next(iter(settings.values()))["input_size"][-1])
    return ModelEntry(f"pretrainedmodels/{key}", family_of(key), "pretrainedmodels", size,
                      _pretrainedmodels_builder(key), weights=key)


def _native_entry(name: str) -> ModelEntry:
    module, function, size, family = _NATIVE[name]
    return ModelEntry(name, family, "dnnbench", size, _native_builder(module, function),
                      note=(importlib.import_module(f"dnnbench.zoo.nets.{module}").__doc__ or "").split("\n")[0])


def _user_entry(spec: str, input_size: int) -> ModelEntry:
    target, _, function = spec.rpartition(":")
    if not target or not function:
        raise UserError(f"user model {spec!r}: write it as path/to/file.py:function or package.module:function")

    def load_function():
        if target.endswith(".py") or "/" in target or "\\" in target:
            path = Path(target)
            if not path.is_file():
                raise UserError(f"user model {spec!r}: file {target} not found; give the path of a Python file")
            module_name = f"dnnbench_user_{abs(hash(str(path.resolve())))}"
            spec_ = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec_)
            sys.modules[module_name] = module
            try:
                spec_.loader.exec_module(module)
            except Exception as exc:
                raise UserError(f"user model {spec!r}: importing {target} failed: {type(exc).__name__}: {exc}") from exc
        else:
            try:
                module = importlib.import_module(target)
            except ImportError as exc:
                raise UserError(f"user model {spec!r}: cannot import module {target!r} ({exc}); is it on PYTHONPATH?") from exc
        fn = getattr(module, function, None)
        if not callable(fn):
            raise UserError(f"user model {spec!r}: {target} has no function {function!r}")
        return fn

    if (target.endswith(".py") or "/" in target or "\\" in target) and not Path(target).is_file():
        # fail early, at name resolution, without running the file
        raise UserError(f"user model {spec!r}: file {target} not found; give the path of a Python file")
    loaded: list = []

    def build_user():
        # imported only here, once, when a model is first built: a sweep resolves names in its own
        # process, and a user's file (its imports, its module-level code) must run only in a worker
        if not loaded:
            loaded.append(load_function())
        model = loaded[0]()
        if not isinstance(model, nn.Module):
            raise UserError(f"user model {spec!r}: {function}() returned {type(model).__name__}, not a torch.nn.Module")
        return model

    return ModelEntry(spec, "user", "user", int(input_size), build_user)


def is_user_model(name: str) -> bool:
    return ":" in name and not re.match(r"^[A-Za-z]:[\\/]", name)


def all_names() -> list[str]:
    """Every registered name (aliases excluded), in a stable order."""
    names = list(_torchvision_names())
    names += sorted(_NATIVE)
    names += [f"pretrainedmodels/{k}" for k in _pretrainedmodels_names()]
    names += [f"timm/{n}" for n in sorted(_timm_names())]
    return names


def canonical(name: str) -> str:
    """The registry name ``name`` stands for, or raises ``UserError`` with the closest names."""
    if name in _NATIVE or name in _torchvision_names():
        return name
    prefix, _, rest = name.partition("/")
    if prefix == "timm" and rest in _timm_names():
        return name
    if prefix == "pretrainedmodels" and rest in _pretrainedmodels_names():
        return name
    loose = _key(name)
    for alias, target in ALIASES.items():
        if _key(alias) == loose:
            return target
    for candidate in list(_torchvision_names()) + list(_NATIVE):
        if _key(candidate) == loose:
            return candidate
    raise UserError(_unknown_message(name))


def _unknown_message(name: str) -> str:
    pool = all_names() + list(ALIASES)
    close = _one_per_model(difflib.get_close_matches(name, pool, n=12, cutoff=0.6))
    if not close:
        lowered = {p.lower(): p for p in reversed(pool)}  # the first spelling of each lower-case name
        close = _one_per_model([lowered[m] for m in difflib.get_close_matches(name.lower(), list(lowered), n=12,
                                                                               cutoff=0.5)])
    hint = f"; did you mean {', '.join(close[:3])}?" if close else "; run `dnnbench models` for the list"
    return f"unknown model {name!r}{hint}"


def _one_per_model(names: list[str]) -> list[str]:
    """``names`` without those that stand for a model already listed (``resnet-50`` after ``resnet50``)."""
    seen, out = set(), []
    for n in names:
        target = ALIASES.get(n, n)
        if target not in seen:
            seen.add(target)
            out.append(n)
    return out


def get(name: str, input_size: int | None = None, weights_file: str | os.PathLike | None = None) -> ModelEntry:
    """The entry for ``name`` (a registry name, an alias or a user model spec).

    ``input_size`` overrides the native input size (and is the input size of user models,
    default 224). ``weights_file``: the user's weights (`with_weights`).
    """
    entry = _get(name, input_size)
    return with_weights(entry, weights_file) if weights_file else entry


def with_weights(entry: ModelEntry, path: str | os.PathLike) -> ModelEntry:
    """``entry`` run with the user's weights in ``path`` (read here without running code, so a bad or
    hostile file is refused before anything starts): named ``NAME [FILE]``, so that its cells are never
    pooled with those of random weights, its classifier resized to the file's (a model retrained on
    other classes), and no published accuracy (those weights are the user's)."""
    from .weights import fit_head_, read_state_dict

    path = os.path.abspath(os.fspath(path))
    shapes = {k: torch.empty(v.shape, device="meta") for k, v in read_state_dict(path).items()}
    base_builder = entry.builder

    def builder():
        model = base_builder()
        fit_head_(model, shapes)
        return model

    return replace(entry, name=f"{entry.name} [{os.path.basename(path)}]", builder=builder, weights=None,
                   weights_file=path, base=entry.name)


def _get(name: str, input_size: int | None = None) -> ModelEntry:
    if is_user_model(name):
        return _user_entry(name, input_size or 224)
    name = canonical(name)
    if name.startswith("timm/"):
        return _timm_entry(name[5:], input_size)
    if name in _NATIVE:
        entry = _native_entry(name)
    elif name.startswith("pretrainedmodels/"):
        entry = _pretrainedmodels_entry(name.split("/", 1)[1])
    else:
        return _torchvision_entry(name, input_size)
    if input_size:
        entry = replace(entry, input_size=int(input_size))
    return entry
