"""A small CNN for the accuracy benchmark (benchmarks/trained_accuracy.py): built with ImageNet's 1000
outputs, as a zoo model is; the trained weights resize its head to their classes."""

from torch import nn


def small_cnn():
    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                             nn.MaxPool2d(2))

    return nn.Sequential(block(3, 16), block(16, 32), block(32, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(64, 1000))
