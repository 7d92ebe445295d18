"""Every model of every preset builds with random weights, goes through a safetensors file the way
`dnnbench run` loads it (safetensors.torch.save_model, then zoo.weights.load_weights), and runs a
real forward pass at batch size 1."""

import pytest
import torch
from safetensors.torch import save_model

from dnnbench.zoo import PRESETS, get
from dnnbench.zoo.weights import load_weights

ALL_PRESET_MODELS = list(dict.fromkeys(n for names in PRESETS.values() for n in names))


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_PRESET_MODELS)
def test_forward_pass_at_batch_size_1(name, tmp_path):
    entry = get(name)
    path = tmp_path / "weights.safetensors"
    save_model(entry.build("cpu"), str(path))
    model = entry.build("cpu", randomize=False)  # its values all come from the file
    load_weights(model, path, "cpu")
    assert not model.training
    with torch.inference_mode():
        out = model(torch.randn(1, 3, entry.input_size, entry.input_size))
    assert out.shape == (1, 1000)
    assert torch.isfinite(out).all()
