"""ShuffleNet (v1), 1x, 3 groups.

Architecture: X. Zhang, X. Zhou, M. Lin, J. Sun, "ShuffleNet: An Extremely Efficient Convolutional
Neural Network for Mobile Devices", CVPR 2018, arXiv:1707.01083, Table 1 (g = 3: 240, 480 and 960
output channels in stages 2 to 4, repeated 4, 8 and 4 times) and Figure 2 (units of 1x1 group
convolution, channel shuffle, 3x3 depthwise convolution, 1x1 group convolution; bottleneck width a
quarter of the output; the stride-2 unit concatenates a 3x3 average-pooled shortcut; the first
1x1 convolution of stage 2 is not grouped, its input having only 24 channels). The paper gives
140 MFLOPs (multiply-adds) for this configuration.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

INPUT_SIZE = 224


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, groups: int, group_first: bool = True):
        super().__init__()
        self.stride = stride
        self.groups = groups
        branch_out = cout - cin if stride == 2 else cout
        inner = cout // 4
        first_groups = groups if group_first else 1
        self.reduce = nn.Sequential(nn.Conv2d(cin, inner, 1, groups=first_groups, bias=False), nn.BatchNorm2d(inner), nn.ReLU(True))
        self.depthwise = nn.Sequential(nn.Conv2d(inner, inner, 3, stride, 1, groups=inner, bias=False), nn.BatchNorm2d(inner))
        self.expand = nn.Sequential(nn.Conv2d(inner, branch_out, 1, groups=groups, bias=False), nn.BatchNorm2d(branch_out))

    def forward(self, x):
        branch = self.reduce(x)
        branch = channel_shuffle(branch, self.groups)
        branch = self.expand(self.depthwise(branch))
        if self.stride == 2:
            return F.relu(torch.cat([F.avg_pool2d(x, 3, 2, 1), branch], dim=1))
        return F.relu(x + branch)


class ShuffleNetV1(nn.Module):
    def __init__(self, num_classes: int = 1000, groups: int = 3, stage_channels=(240, 480, 960), repeats=(4, 8, 4)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU(True), nn.MaxPool2d(3, 2, 1))
        units: list[nn.Module] = []
        cin = 24
        for stage, (cout, repeat) in enumerate(zip(stage_channels, repeats, strict=True)):
            for i in range(repeat):
                units.append(ShuffleUnit(cin, cout, 2 if i == 0 else 1, groups, group_first=not (stage == 0 and i == 0)))
                cin = cout
        self.stages = nn.Sequential(*units)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def shufflenet_v1(num_classes: int = 1000) -> nn.Module:
    return ShuffleNetV1(num_classes)
