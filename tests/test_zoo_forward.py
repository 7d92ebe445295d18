"""Every model of every preset builds with random weights and runs a real forward pass at batch size 1."""

import pytest
import torch

from dnnbench.zoo import PRESETS, get

ALL_PRESET_MODELS = list(dict.fromkeys(n for names in PRESETS.values() for n in names))


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_PRESET_MODELS)
def test_forward_pass_at_batch_size_1(name):
    entry = get(name)
    model = entry.build("cpu")
    assert not model.training
    with torch.inference_mode():
        out = model(torch.randn(1, 3, entry.input_size, entry.input_size))
    assert out.shape == (1, 1000)
    assert torch.isfinite(out).all()
