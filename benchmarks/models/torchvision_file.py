"""torchvision's models as user model files (`benchmarks/models/torchvision_file.py:resnet18`): the same
network as the registry's, but a user's file starts a fresh worker instead of a forked one."""

import torchvision


def resnet18():
    return torchvision.models.resnet18()


def mobilenet_v2():
    return torchvision.models.mobilenet_v2()


def vgg16():
    return torchvision.models.vgg16()
