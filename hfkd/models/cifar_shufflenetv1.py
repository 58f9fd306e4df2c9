"""CIFAR ShuffleNetV1 of the reference toolboxes (spec section 6.5), registered as ``ShuffleV1``."""

import torch
import torch.nn.functional as F
from torch import nn

from .channel_shuffle import channel_shuffle
from .feature_classifier import FeatureClassifier
from .registry import register_model


class Bottleneck(nn.Module):
    """ShuffleNetV1 unit: grouped 1x1, shuffle, depthwise 3x3, grouped 1x1; concat (stride 2) or add (stride 1)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, groups: int) -> None:
        super().__init__()
        self.stride = stride
        mid_planes = out_planes // 4
        # the very first unit sees the 24-channel stem, which is not split into groups
        self.first_groups = 1 if in_planes == 24 else groups
        self.conv1 = nn.Conv2d(in_planes, mid_planes, 1, groups=self.first_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_planes)
        self.conv2 = nn.Conv2d(mid_planes, mid_planes, 3, stride, 1, groups=mid_planes, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_planes)
        self.conv3 = nn.Conv2d(mid_planes, out_planes, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut: nn.Module = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the unit; stride-2 units append the average-pooled input after the residual branch."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = channel_shuffle(out, self.first_groups)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        res = self.shortcut(x)
        out = torch.cat([out, res], 1) if self.stride == 2 else out + res
        return F.relu(out)


class ShuffleNetV1(FeatureClassifier):
    """CIFAR ShuffleNetV1: 1x1 stem (no max pool), three stages of bottlenecks, ``avg_pool2d(4)`` and ``linear``."""

    head_name = "linear"

    def __init__(
        self,
        num_classes: int = 100,
        out_planes: tuple[int, int, int] = (240, 480, 960),
        num_blocks: tuple[int, int, int] = (4, 8, 4),
        groups: int = 3,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.in_planes = 24
        self.layer1 = self._make_layer(out_planes[0], num_blocks[0], groups)
        self.layer2 = self._make_layer(out_planes[1], num_blocks[1], groups)
        self.layer3 = self._make_layer(out_planes[2], num_blocks[2], groups)
        self.linear = nn.Linear(out_planes[2], num_classes)

    def _make_layer(self, out_planes: int, num_blocks: int, groups: int) -> nn.Sequential:
        """A stride-2 concat unit producing ``out_planes - in_planes`` new channels, then stride-1 additive units."""
        layers = []
        for j in range(num_blocks):
            if j == 0:
                layers.append(Bottleneck(self.in_planes, out_planes - self.in_planes, 2, groups))
            else:
                layers.append(Bottleneck(self.in_planes, out_planes, 1, groups))
            self.in_planes = out_planes
        return nn.Sequential(*layers)

    def forward_feature_list(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return ``[f0 (stem), f1, f2, f3 (stage outputs), pooled]``."""
        f0 = F.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(f0)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        pooled = F.avg_pool2d(f3, 4).flatten(1)
        return [f0, f1, f2, f3, pooled]


@register_model("ShuffleV1")
def shuffle_v1(num_classes: int = 100, **kwargs) -> ShuffleNetV1:
    """Reference ``ShuffleV1``: out_planes (240, 480, 960), blocks (4, 8, 4), groups 3."""
    return ShuffleNetV1(num_classes=num_classes, out_planes=(240, 480, 960), num_blocks=(4, 8, 4), groups=3, **kwargs)
