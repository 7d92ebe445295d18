"""A small network and the same network with known extra work after it, for the interleaved pair's
tests (``run --versus model=...``): the extra work is a matrix product several times the network's
own pass, so the new side is slower by far more than any drift."""

import torch
from torch import nn


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(self.conv(x).relu().mean((2, 3)))


class WithExtraWork(Small):
    def __init__(self, n: int = 384):
        super().__init__()
        self.register_buffer("a", torch.randn(n, n) / n**0.5, persistent=False)

    def forward(self, x):
        y = super().forward(x)
        torch.mm(self.a, self.a)
        return y


def small():
    return Small()


def small_again():
    return Small()


def small_with_extra_work():
    return WithExtraWork()
