"""ENet for ImageNet classification.

Architecture: A. Paszke, A. Chaurasia, S. Kim, E. Culurciello, "ENet: A Deep Neural Network
Architecture for Real-Time Semantic Segmentation", arXiv:1606.02147, 2016, Table 1: the initial
block and the encoder (stages 1 to 3: bottlenecks with 1x1 projections of ratio 4, regular, dilated
and asymmetric 5x1/1x5 convolutions, PReLU, spatial dropout, max-pooling shortcuts with zero-padded
channels when downsampling). For ImageNet (E. Culurciello, 2016, as plotted by Canziani et al.
2016) the decoder is replaced by a classifier: global average pooling of the 128 encoder channels
and one linear layer.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

INPUT_SIZE = 224


class InitialBlock(nn.Module):
    """3x3/2 convolution with 13 filters, concatenated with a 2x2 max pooling of the input: 16 channels."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 13, 3, stride=2, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2, 2)
        self.bn = nn.BatchNorm2d(16, eps=1e-3)
        self.act = nn.PReLU(16)

    def forward(self, x):
        return self.act(self.bn(torch.cat([self.conv(x), self.pool(x)], dim=1)))


class Bottleneck(nn.Module):
    """ENet bottleneck; ``kind`` is ``regular``, ``dilated``, ``asymmetric`` or ``downsample``."""

    def __init__(self, cin: int, cout: int, kind: str = "regular", dilation: int = 1, dropout: float = 0.1):
        super().__init__()
        inner = cout // 4
        self.downsample = kind == "downsample"
        stride = 2 if self.downsample else 1
        self.project = nn.Sequential(
            nn.Conv2d(cin, inner, stride, stride=stride, bias=False), nn.BatchNorm2d(inner, eps=1e-3), nn.PReLU(inner)
        )
        if kind == "asymmetric":
            main: list[nn.Module] = [nn.Conv2d(inner, inner, (5, 1), padding=(2, 0), bias=False),
                                     nn.Conv2d(inner, inner, (1, 5), padding=(0, 2), bias=False)]
        else:
            main = [nn.Conv2d(inner, inner, 3, padding=dilation, dilation=dilation, bias=False)]
        self.conv = nn.Sequential(*main, nn.BatchNorm2d(inner, eps=1e-3), nn.PReLU(inner))
        self.expand = nn.Sequential(nn.Conv2d(inner, cout, 1, bias=False), nn.BatchNorm2d(cout, eps=1e-3))
        self.dropout = nn.Dropout2d(dropout)
        self.pad_channels = cout - cin
        self.act = nn.PReLU(cout)

    def forward(self, x):
        shortcut = x
        if self.downsample:
            shortcut = F.max_pool2d(x, 2, 2)
        if self.pad_channels:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.pad_channels))
        branch = self.dropout(self.expand(self.conv(self.project(x))))
        return self.act(branch + shortcut)


def _stage(channels: int) -> list[nn.Module]:
    """Bottlenecks x.1 to x.8 of stages 2 and 3."""
    layout = [("regular", 1), ("dilated", 2), ("asymmetric", 1), ("dilated", 4),
              ("regular", 1), ("dilated", 8), ("asymmetric", 1), ("dilated", 16)]
    return [Bottleneck(channels, channels, kind, dilation) for kind, dilation in layout]


class ENet(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.features = nn.Sequential(
            InitialBlock(),
            Bottleneck(16, 64, "downsample", dropout=0.01),
            *[Bottleneck(64, 64, dropout=0.01) for _ in range(4)],
            Bottleneck(64, 128, "downsample"),
            *_stage(128),
            *_stage(128),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(128, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def enet(num_classes: int = 1000) -> nn.Module:
    return ENet(num_classes)
