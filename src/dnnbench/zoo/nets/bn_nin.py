"""BN-NIN: Network In Network for ImageNet, with batch normalisation.

Architecture: M. Lin, Q. Chen, S. Yan, "Network In Network", arXiv:1312.4400, 2013: four "mlpconv"
blocks (a spatial convolution followed by two 1x1 convolutions, each with ReLU) separated by max
pooling, then global average pooling. The ImageNet layout (96-256-384-1024 filters, 11x11/4, 5x5,
3x3, 3x3) and the batch normalisation after every convolution follow the Torch ImageNet training
scripts (``ninbn``) whose weights S. Zagoruyko re-evaluated (2016) and Canziani et al. 2016 plotted;
a linear classifier maps the 1024 pooled features to the classes.
"""

from __future__ import annotations

from torch import nn

INPUT_SIZE = 224


def _mlpconv(cin: int, cout: int, kernel: int, stride: int, padding: int) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout, eps=1e-3), nn.ReLU(True)]
    for _ in range(2):
        layers += [nn.Conv2d(cout, cout, 1), nn.BatchNorm2d(cout, eps=1e-3), nn.ReLU(True)]
    return layers


class BNNIN(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.features = nn.Sequential(
            *_mlpconv(3, 96, 11, 4, 5), nn.MaxPool2d(3, 2, 1),
            *_mlpconv(96, 256, 5, 1, 2), nn.MaxPool2d(3, 2, 1),
            *_mlpconv(256, 384, 3, 1, 1), nn.MaxPool2d(3, 2, 1),
            *_mlpconv(384, 1024, 3, 1, 1),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.classifier = nn.Linear(1024, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


def bn_nin(num_classes: int = 1000) -> nn.Module:
    return BNNIN(num_classes)
