"""Cheap random weights: normal values of the right scale, no zeros, no denormals, init restored;
and weights saved with safetensors loaded back as `dnnbench run` loads them."""

import math

import pytest
import torch
from safetensors.torch import load_model, save_model
from torch import nn

from dnnbench.zoo import get
from dnnbench.zoo.weights import load_weights, randomize_, skip_init


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


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_mnasnet_needs_its_state_dict_version(tmp_path):
    path = tmp_path / "w.safetensors"
    save_model(get("mnasnet0_5").build("cpu"), str(path))
    with pytest.raises(ValueError, match="version should be set to 1 or 2 instead of None"):
        load_model(get("mnasnet0_5").build("cpu"), str(path))  # safetensors' own loader loses it


def test_load_weights_keeps_the_state_dict_version(tmp_path):
    path = tmp_path / "w.safetensors"
    saved = get("mnasnet0_5").build("cpu")
    save_model(saved, str(path))
    model = get("mnasnet0_5").build("cpu", randomize=False)
    load_weights(model, path, "cpu")
    assert _same_state(model, saved)


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 4, bias=False)
        self.head = nn.Linear(4, 4, bias=False)
        self.head.weight = self.embed.weight  # one tensor under two names

    def forward(self, x):
        return self.head(self.embed(x))


def test_load_weights_fills_tied_weights_saved_once(tmp_path):
    path = tmp_path / "w.safetensors"
    saved = Tied()
    save_model(saved, str(path))  # keeps one of the two names
    model = Tied()
    load_weights(model, path, "cpu")
    assert model.head.weight is model.embed.weight and torch.equal(model.embed.weight, saved.embed.weight)


def test_load_weights_is_strict(tmp_path):
    path = tmp_path / "w.safetensors"
    save_model(nn.Sequential(nn.Linear(4, 4)), str(path))
    with pytest.raises(RuntimeError, match=r"missing 1\.weight, 1\.bias; unexpected 0\.bias, 0\.weight"):
        load_weights(nn.Sequential(nn.Identity(), nn.Linear(4, 4)), path, "cpu")
