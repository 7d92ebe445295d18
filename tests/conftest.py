import warnings

import pytest
import torch

warnings.filterwarnings("ignore")
torch.set_num_threads(2)


@pytest.fixture
def meta_input():
    def make(size: int, batch: int = 1):
        return torch.empty(batch, 3, size, size, device="meta")

    return make
