"""BN-AlexNet: AlexNet with batch normalisation after every convolution and hidden linear layer.

Architecture: A. Krizhevsky, "One weird trick for parallelizing convolutional neural networks",
arXiv:1404.5997, 2014 (the single-tower AlexNet: 64-192-384-256-256 filters), with batch
normalisation (S. Ioffe, C. Szegedy, "Batch Normalization", ICML 2015, arXiv:1502.03167) after each
convolution and each hidden fully connected layer, as in the Torch ImageNet training scripts
(``alexnetowtbn``) whose weights S. Zagoruyko re-evaluated (2016) and Canziani et al. 2016 plotted.
"""

from __future__ import annotations

from torch import nn

INPUT_SIZE = 224


def _conv(cin: int, cout: int, kernel: int, stride: int, padding: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class BNAlexNet(nn.Module):
    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            *_conv(3, 64, 11, 4, 2), nn.MaxPool2d(3, 2),
            *_conv(64, 192, 5, 1, 2), nn.MaxPool2d(3, 2),
            *_conv(192, 384, 3, 1, 1),
            *_conv(384, 256, 3, 1, 1),
            *_conv(256, 256, 3, 1, 1), nn.MaxPool2d(3, 2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096), nn.BatchNorm1d(4096), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.BatchNorm1d(4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def bn_alexnet(num_classes: int = 1000) -> nn.Module:
    return BNAlexNet(num_classes)
