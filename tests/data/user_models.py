"""A user's model file that imports torch only (no torchvision): its workers fork from the server
without torchvision, and must measure memory as a fresh process does."""

from torch import nn


def convnet():
    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

    return nn.Sequential(block(3, 64), block(64, 128), block(128, 256), block(256, 512), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(512, 1000))
