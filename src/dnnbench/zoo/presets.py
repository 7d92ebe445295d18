"""Named lists of models: the zoos of the papers and tables our users start from."""

from __future__ import annotations

from ..errors import UserError

_CANZIANI2016 = [
    "alexnet", "bn-alexnet", "bn-nin", "enet", "googlenet", "vgg16", "vgg19",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "inception_v3", "timm/inception_v4",
]

PRESETS: dict[str, list[str]] = {
    # Canziani, Paszke, Culurciello 2016, "An Analysis of Deep Neural Network Models for Practical Applications"
    "canziani2016": _CANZIANI2016,
    # Culurciello et al. 2018, "Analysis of deep neural networks" (the update of the paper's figures)
    "culurciello2018": _CANZIANI2016 + [
        "shufflenet-v1", "shufflenet_v2_x1_0", "timm/mobilenetv1_100", "mobilenet_v2", "timm/legacy_xception",
        "densenet121", "densenet169", "densenet201", "squeezenet1_0", "squeezenet1_1",
    ],
    # Bianco, Cadene, Celona, Napoletano 2018, "Benchmark Analysis of Representative Deep Neural Network
    # Architectures": the models of its project page, plus PolyNet from the same package
    "bianco2018": [
        "alexnet", "pretrainedmodels/bninception", "pretrainedmodels/cafferesnet101",
        "densenet121", "densenet161", "densenet169", "densenet201",
        "timm/dpn68", "timm/dpn92", "timm/dpn98", "timm/dpn107", "timm/dpn131",
        "pretrainedmodels/fbresnet152", "googlenet", "timm/inception_resnet_v2", "inception_v3", "timm/inception_v4",
        "timm/mobilenetv1_100", "mobilenet_v2", "timm/nasnetalarge", "pretrainedmodels/nasnetamobile",
        "timm/resnext101_32x4d", "resnext101_64x4d",
        "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
        "timm/legacy_senet154", "timm/legacy_seresnet50", "timm/legacy_seresnet101", "timm/legacy_seresnet152",
        "timm/legacy_seresnext50_32x4d", "timm/legacy_seresnext101_32x4d", "shufflenet-v1",
        "squeezenet1_0", "squeezenet1_1", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn",
        "vgg19", "vgg19_bn", "timm/legacy_xception", "pretrainedmodels/polynet",
    ],
    # The Keras Applications table, by the PyTorch models of the same architectures
    "keras": [
        "timm/legacy_xception", "vgg16", "vgg19", "resnet50", "timm/resnetv2_50", "resnet101", "timm/resnetv2_101",
        "resnet152", "timm/resnetv2_152", "inception_v3", "timm/inception_resnet_v2", "timm/mobilenetv1_100",
        "mobilenet_v2", "densenet121", "densenet169", "densenet201", "pretrainedmodels/nasnetamobile",
        "timm/nasnetalarge", *[f"efficientnet_b{i}" for i in range(8)],
        *[f"timm/tf_efficientnetv2_b{i}" for i in range(4)], "efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l",
    ],
    # Models to calibrate `dnnbench predict` on: spread over the kinds of kernel (dense convolution, large
    # and small; grouped and depthwise convolution, with and without squeeze-excitation; channel
    # shuffles; attention and the layer norms and large linear layers of transformers)
    "calibration": [
        "alexnet", "vgg11", "googlenet", "resnet18", "resnet50", "squeezenet1_1", "mobilenet_v2", "efficientnet_b0",
        "regnet_x_400mf", "shufflenet_v2_x1_0", "convnext_tiny", "timm/deit_tiny_patch16_224",
    ],
    # Small models for phones and boards
    "mobile": [
        "timm/mobilenetv1_100", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "shufflenet-v1",
        "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "squeezenet1_0", "squeezenet1_1", "mnasnet0_5", "mnasnet1_0",
        "efficientnet_b0", "pretrainedmodels/nasnetamobile", "timm/ghostnet_100", "enet",
    ],
}


def preset(name: str) -> list[str]:
    """The model names of preset ``name``."""
    try:
        return list(PRESETS[name])
    except KeyError:
        raise UserError(f"unknown zoo {name!r}; choose one of {', '.join(PRESETS)}") from None
