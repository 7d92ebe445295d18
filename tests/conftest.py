import os
import sys
import warnings

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))  # test modules share fixtures (test_answer uses test_report's)
warnings.filterwarnings("ignore")
torch.set_num_threads(2)


@pytest.fixture
def meta_input():
    def make(size: int, batch: int = 1):
        return torch.empty(batch, 3, size, size, device="meta")

    return make
