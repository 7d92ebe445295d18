"""Cheap random weights: normal values of the right scale, no zeros, no denormals, init restored."""

import math

import torch
from torch import nn

from dnnbench.zoo import get
from dnnbench.zoo.weights import randomize_, skip_init


def test_skip_init_restores_initialisers():
    before = (nn.init.kaiming_normal_, torch.Tensor.normal_)
    with skip_init():
        assert nn.init.kaiming_normal_ is not before[0]
        layer = nn.Linear(4, 4)
    assert (nn.init.kaiming_normal_, torch.Tensor.normal_) == before
    randomize_(layer)
    assert torch.isfinite(layer.weight).all()


def test_randomized_weights_are_normal_and_scaled():
    model = get("vgg11").build("cpu")
    conv = model.features[0].weight  # 64 x 3 x 3 x 3
    assert abs(conv.std().item() - math.sqrt(2 / 27)) < 0.05 * math.sqrt(2 / 27)
    assert abs(conv.mean().item()) < 0.02
    fc = model.classifier[0].weight  # 4096 x 25088
    assert abs(fc.std().item() - math.sqrt(2 / 25088)) < 0.01 * math.sqrt(2 / 25088)
    tiny = torch.finfo(torch.float32).tiny
    for p in model.parameters():
        assert torch.isfinite(p).all()
        nonzero = p[p != 0].abs()
        assert (p == 0).float().mean() < 1e-4, "weights must not be zeros"
        assert (nonzero >= tiny).all(), "weights must not be denormal"


def test_batchnorm_statistics_are_usable():
    model = get("resnet18").build("cpu")
    assert torch.equal(model.bn1.running_var, torch.ones(64))
    assert torch.equal(model.bn1.running_mean, torch.zeros(64))
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 224, 224))
    assert torch.isfinite(out).all() and out.std() > 0


def test_random_weights_are_repeatable():
    a = get("squeezenet1_1").build("cpu")
    b = get("squeezenet1_1").build("cpu")
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
