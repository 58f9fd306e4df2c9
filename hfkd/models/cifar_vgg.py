"""CIFAR VGG with BatchNorm (``vgg8`` .. ``vgg19``), spec section 6.3.

Five blocks ``block0..block4``, each a run of ``[conv3x3 (bias), BN, ReLU]`` whose last ReLU is left to the
forward; keys ``block{b}.{3i}`` (conv) and ``block{b}.{3i+1}`` (BN), head ``classifier``.
"""

import torch
from torch import nn

from .feature_classifier import FeatureClassifier
from .reference_init import init_normal_fan_out
from .registry import register_model

CFGS: dict[str, list[list[int]]] = {
    "A": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "B": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "D": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "E": [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512], [512, 512, 512, 512]],
    "S": [[64], [128], [256], [512], [512]],
}


def _make_block(widths: list[int], in_channels: int) -> nn.Sequential:
    """``[conv3x3, BN, ReLU] * len(widths)`` without the trailing ReLU."""
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Conv2d(in_channels, w, kernel_size=3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        in_channels = w
    return nn.Sequential(*layers[:-1])


class VGG(FeatureClassifier):
    """CIFAR VGG-BN: blocks 0-4, max pools after 0-2 (and 3 for 64-high inputs), average pool, classifier."""

    head_name = "classifier"

    def __init__(self, cfg: list[list[int]], num_classes: int = 100) -> None:
        super().__init__()
        if len(cfg) != 5:
            raise ValueError(f"a VGG cfg needs 5 blocks, got {len(cfg)}")
        self.block0 = _make_block(cfg[0], 3)
        self.block1 = _make_block(cfg[1], cfg[0][-1])
        self.block2 = _make_block(cfg[2], cfg[1][-1])
        self.block3 = _make_block(cfg[3], cfg[2][-1])
        self.block4 = _make_block(cfg[4], cfg[3][-1])
        self.pool0 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool1 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool2 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool3 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool4 = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cfg[4][-1], num_classes)

        init_normal_fan_out(self)

    def forward_feature_list(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return ``[f0, f1, f2, f3, f4 (all post-ReLU), pooled]``; ``pool3`` runs only for 64-pixel-high inputs."""
        h = x.shape[2]
        f0 = torch.relu(self.block0(x))
        f1 = torch.relu(self.block1(self.pool0(f0)))
        f2 = torch.relu(self.block2(self.pool1(f1)))
        f3 = torch.relu(self.block3(self.pool2(f2)))
        out = self.pool3(f3) if h == 64 else f3
        f4 = torch.relu(self.block4(out))
        pooled = torch.flatten(self.pool4(f4), 1)
        return [f0, f1, f2, f3, f4, pooled]


@register_model("vgg8")
def vgg8(num_classes: int = 100, **kwargs) -> VGG:
    """VGG-8 with BN (cfg S)."""
    return VGG(CFGS["S"], num_classes=num_classes, **kwargs)


@register_model("vgg11")
def vgg11(num_classes: int = 100, **kwargs) -> VGG:
    """VGG-11 with BN (cfg A)."""
    return VGG(CFGS["A"], num_classes=num_classes, **kwargs)


@register_model("vgg13")
def vgg13(num_classes: int = 100, **kwargs) -> VGG:
    """VGG-13 with BN (cfg B)."""
    return VGG(CFGS["B"], num_classes=num_classes, **kwargs)


@register_model("vgg16")
def vgg16(num_classes: int = 100, **kwargs) -> VGG:
    """VGG-16 with BN (cfg D)."""
    return VGG(CFGS["D"], num_classes=num_classes, **kwargs)


@register_model("vgg19")
def vgg19(num_classes: int = 100, **kwargs) -> VGG:
    """VGG-19 with BN (cfg E)."""
    return VGG(CFGS["E"], num_classes=num_classes, **kwargs)
