"""CIFAR ResNet with BasicBlocks: ``resnet8`` .. ``resnet110``, ``resnet8x4``, ``resnet32x4`` and SimKD's widths.

State_dict keys follow spec section 6.1: ``conv1``, ``bn1``, ``layer{1,2,3}.{j}.{conv1,bn1,conv2,bn2}``,
``layer{s}.0.downsample.{0,1}`` where the first block changes stride or width, and the head ``fc``.
"""

import torch
from torch import nn

from .feature_classifier import FeatureClassifier
from .reference_init import init_kaiming_fan_out
from .registry import register_model

PLAIN_FILTERS = [16, 16, 32, 64]
X2_FILTERS = [16, 32, 64, 128]
X4_FILTERS = [32, 64, 128, 256]


class BasicBlock(nn.Module):
    """conv3x3 (stride s) -> BN -> ReLU -> conv3x3 -> BN, plus shortcut, then ReLU."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block forward; returns the post-ReLU output."""
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + shortcut)


class ResNet(FeatureClassifier):
    """CIFAR ResNet: 3x3 stem, three BasicBlock stages (strides 1, 2, 2), global average pool, ``fc``."""

    head_name = "fc"

    def __init__(self, depth: int, num_filters: list[int], num_classes: int = 100) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
        if len(num_filters) != 4:
            raise ValueError(f"num_filters must list 4 widths (stem + 3 stages), got {num_filters}")
        n = (depth - 2) // 6
        self.in_planes = num_filters[0]
        self.conv1 = nn.Conv2d(3, num_filters[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(num_filters[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(num_filters[1], n, stride=1)
        self.layer2 = self._make_layer(num_filters[2], n, stride=2)
        self.layer3 = self._make_layer(num_filters[3], n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(num_filters[3] * BasicBlock.expansion, num_classes)

        init_kaiming_fan_out(self)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        """One stage of ``blocks`` BasicBlocks; the first gets a 1x1 conv + BN downsample if shape changes."""
        downsample = None
        if stride != 1 or self.in_planes != planes * BasicBlock.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.in_planes, planes * BasicBlock.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * BasicBlock.expansion),
            )
        layers = [BasicBlock(self.in_planes, planes, stride, downsample)]
        self.in_planes = planes * BasicBlock.expansion
        layers.extend(BasicBlock(self.in_planes, planes) for _ in range(1, blocks))
        return nn.Sequential(*layers)

    def forward_feature_list(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return ``[f0 stem, f1, f2, f3 stage outputs (post-ReLU), pooled]``."""
        f0 = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(f0)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        pooled = torch.flatten(self.avgpool(f3), 1)
        return [f0, f1, f2, f3, pooled]


@register_model("resnet8")
def resnet8(num_classes: int = 100, **kwargs) -> ResNet:
    """ResNet-8, filters [16, 16, 32, 64]."""
    return ResNet(8, PLAIN_FILTERS, num_classes=num_classes, **kwargs)


@register_model("resnet14")
def resnet14(num_classes: int = 100, **kwargs) -> ResNet:
    """ResNet-14, filters [16, 16, 32, 64]."""
    return ResNet(14, PLAIN_FILTERS, num_classes=num_classes, **kwargs)


@register_model("resnet20")
def resnet20(num_classes: int = 100, **kwargs) -> ResNet:
    """ResNet-20, filters [16, 16, 32, 64]."""
    return ResNet(20, PLAIN_FILTERS, num_classes=num_classes, **kwargs)


@register_model("resnet32")
def resnet32(num_classes: int = 100, **kwargs) -> ResNet:
    """ResNet-32, filters [16, 16, 32, 64]."""
    return ResNet(32, PLAIN_FILTERS, num_classes=num_classes, **kwargs)


@register_model("resnet38")
def resnet38(num_classes: int = 100, **kwargs) -> ResNet:
    """SimKD ResNet-38, filters [16, 16, 32, 64] (the WRN-40-1 analogue)."""
    return ResNet(38, PLAIN_FILTERS, num_classes=num_classes, **kwargs)


@register_model("resnet44")
def resnet44(num_classes: int = 100, **kwargs) -> ResNet:
    """ResNet-44, filters [16, 16, 32, 64]."""
    return ResNet(44, PLAIN_FILTERS, num_classes=num_classes, **kwargs)


@register_model("resnet56")
def resnet56(num_classes: int = 100, **kwargs) -> ResNet:
    """ResNet-56, filters [16, 16, 32, 64]."""
    return ResNet(56, PLAIN_FILTERS, num_classes=num_classes, **kwargs)


@register_model("resnet110")
def resnet110(num_classes: int = 100, **kwargs) -> ResNet:
    """ResNet-110, filters [16, 16, 32, 64]."""
    return ResNet(110, PLAIN_FILTERS, num_classes=num_classes, **kwargs)


@register_model("resnet14x2")
def resnet14x2(num_classes: int = 100, **kwargs) -> ResNet:
    """SimKD ResNet-14x2, filters [16, 32, 64, 128] (the WRN-16-2 analogue)."""
    return ResNet(14, X2_FILTERS, num_classes=num_classes, **kwargs)


@register_model("resnet38x2")
def resnet38x2(num_classes: int = 100, **kwargs) -> ResNet:
    """SimKD ResNet-38x2, filters [16, 32, 64, 128] (the WRN-40-2 analogue)."""
    return ResNet(38, X2_FILTERS, num_classes=num_classes, **kwargs)


@register_model("resnet110x2")
def resnet110x2(num_classes: int = 100, **kwargs) -> ResNet:
    """SimKD ResNet-110x2, filters [16, 32, 64, 128]."""
    return ResNet(110, X2_FILTERS, num_classes=num_classes, **kwargs)


@register_model("resnet8x4")
def resnet8x4(num_classes: int = 100, **kwargs) -> ResNet:
    """ResNet-8x4, filters [32, 64, 128, 256]."""
    return ResNet(8, X4_FILTERS, num_classes=num_classes, **kwargs)


@register_model("resnet14x4")
def resnet14x4(num_classes: int = 100, **kwargs) -> ResNet:
    """SimKD ResNet-14x4, filters [32, 64, 128, 256]."""
    return ResNet(14, X4_FILTERS, num_classes=num_classes, **kwargs)


@register_model("resnet32x4")
def resnet32x4(num_classes: int = 100, **kwargs) -> ResNet:
    """ResNet-32x4, filters [32, 64, 128, 256]."""
    return ResNet(32, X4_FILTERS, num_classes=num_classes, **kwargs)


@register_model("resnet38x4")
def resnet38x4(num_classes: int = 100, **kwargs) -> ResNet:
    """SimKD ResNet-38x4, filters [32, 64, 128, 256]."""
    return ResNet(38, X4_FILTERS, num_classes=num_classes, **kwargs)
