"""RepDistiller's CIFAR ``ResNet50`` (``resnetv2.py``), spec section 6.7.

3x3 stride-1 stem without max pool, Bottleneck stages [3, 4, 6, 3], shortcuts under ``shortcut.{0,1}``,
head ``linear``. Not the torchvision / SimKD ImageNet ResNet-50 (keys differ).
"""

import torch
from torch import nn

from .feature_classifier import FeatureClassifier
from .reference_init import init_kaiming_fan_out
from .registry import register_model


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride s) -> 1x1 (x4 expansion) bottleneck; post-add ReLU."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = self.expansion * planes
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        # an empty Sequential (identity, no keys) unless the shape changes
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual bottleneck forward; returns the post-ReLU output."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + self.shortcut(x))


class ResNet50(FeatureClassifier):
    """CIFAR ResNet-50: conv1/bn1/ReLU stem, ``layer1..layer4`` Bottleneck stages, global average pool, ``linear``."""

    head_name = "linear"

    def __init__(self, num_classes: int = 100, num_blocks: tuple[int, ...] = (3, 4, 6, 3)) -> None:
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(64, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(128, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(256, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(512, num_blocks[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(512 * Bottleneck.expansion, num_classes)

        init_kaiming_fan_out(self)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        """One stage; only its first block has stride ``stride``."""
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(Bottleneck(self.in_planes, planes, s))
            self.in_planes = planes * Bottleneck.expansion
        return nn.Sequential(*layers)

    def forward_feature_list(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return ``[f0 stem, f1..f4 stage outputs (post-ReLU), pooled]``."""
        f0 = torch.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(f0)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        pooled = torch.flatten(self.avgpool(f4), 1)
        return [f0, f1, f2, f3, f4, pooled]


@register_model("ResNet50")
def resnet50_cifar(num_classes: int = 100, **kwargs) -> ResNet50:
    """RepDistiller's CIFAR ResNet-50."""
    return ResNet50(num_classes=num_classes, **kwargs)
