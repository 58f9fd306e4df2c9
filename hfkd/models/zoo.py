"""Imports every CIFAR zoo architecture so that each registers its reference names.

Written as ``from .module import Class`` (not ``from . import module``) so that transformers' remote-code loader,
which follows only that form, ships every architecture file next to an exported model.
"""

from .cifar_mobilenetv2 import MobileNetV2  # noqa: F401
from .cifar_resnet import ResNet  # noqa: F401
from .cifar_resnet50 import ResNet50  # noqa: F401
from .cifar_shufflenetv1 import ShuffleNetV1  # noqa: F401
from .cifar_shufflenetv2 import ShuffleNetV2  # noqa: F401
from .cifar_vgg import VGG  # noqa: F401
from .cifar_wrn import WideResNet  # noqa: F401

ZOO_CLASSES = (MobileNetV2, ResNet, ResNet50, ShuffleNetV1, ShuffleNetV2, VGG, WideResNet)
