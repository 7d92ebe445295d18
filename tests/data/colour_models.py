"""A model whose answer on solid-colour images is known: the class of the image's strongest colour
channel (after ImageNet normalisation), through a 1x1 convolution, pooling and a linear head."""

from torch import nn


def colournet():
    return nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1000))
