"""ResNet-18 again, and ResNet-18 with a known extra share of work: the A/A and A/B pairs of
benchmarks/compare_gate.py. The extra work is a matrix product after the network whose size
(``DNNBENCH_EXTRA_N``) the benchmark chose on a quiet machine so that it costs the share it injects."""

import os

import torch
import torchvision


def resnet18_again():
    return torchvision.models.resnet18()


class WithExtraWork(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, n: int):
        super().__init__()
        self.model = model
        self.register_buffer("a", torch.randn(n, n) / n**0.5, persistent=False)

    def forward(self, x):
        y = self.model(x)
        torch.mm(self.a, self.a)  # the extra work: the same every pass, whatever the batch
        return y


def resnet18_slowed():
    return WithExtraWork(torchvision.models.resnet18(), int(os.environ.get("DNNBENCH_EXTRA_N", "256")))
