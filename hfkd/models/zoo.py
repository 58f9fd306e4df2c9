"""Imports every CIFAR zoo architecture so that each registers its reference names."""

from . import (  # noqa: F401
    cifar_mobilenetv2,
    cifar_resnet,
    cifar_resnet50,
    cifar_shufflenetv1,
    cifar_shufflenetv2,
    cifar_vgg,
    cifar_wrn,
)
