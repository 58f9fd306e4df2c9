"""CIFAR ShuffleNetV2 of the reference toolboxes (spec section 6.6): ``ShuffleV2`` and SimKD's ``ShuffleV2_1_5``."""

import torch
import torch.nn.functional as F
from torch import nn

from .channel_shuffle import channel_shuffle
from .feature_classifier import FeatureClassifier
from .registry import register_model


class BasicBlock(nn.Module):
    """Stride-1 unit: keep the first half of the channels, transform the second half, concat, shuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.conv1 = nn.Conv2d(half, half, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, half, 3, 1, 1, groups=half, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = nn.Conv2d(half, half, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the unit."""
        c = x.shape[1] // 2
        x1, x2 = x[:, :c], x[:, c:]
        out = F.relu(self.bn1(self.conv1(x2)))
        out = self.bn2(self.conv2(out))
        out = F.relu(self.bn3(self.conv3(out)))
        return channel_shuffle(torch.cat([x1, out], 1), 2)


class DownBlock(nn.Module):
    """Stride-2 unit: two branches (left: dw 3x3 + 1x1; right: 1x1 + dw 3x3 + 1x1) of ``out/2`` channels each."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = out_channels // 2
        # left branch
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, 2, 1, groups=in_channels, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        # right branch
        self.conv3 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = nn.Conv2d(mid, mid, 3, 2, 1, groups=mid, bias=False)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = nn.Conv2d(mid, mid, 1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the unit."""
        left = self.bn1(self.conv1(x))
        left = F.relu(self.bn2(self.conv2(left)))
        right = F.relu(self.bn3(self.conv3(x)))
        right = self.bn4(self.conv4(right))
        right = F.relu(self.bn5(self.conv5(right)))
        return channel_shuffle(torch.cat([left, right], 1), 2)


class ShuffleNetV2(FeatureClassifier):
    """CIFAR ShuffleNetV2: 1x1 stem, no max pool, 3 stages, 1x1 ``conv2``/``bn2``, ``avg_pool2d(4)``, ``linear``."""

    head_name = "linear"

    def __init__(
        self,
        num_classes: int = 100,
        out_channels: tuple[int, int, int, int] = (116, 232, 464, 1024),
        num_blocks: tuple[int, int, int] = (3, 7, 3),
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.in_channels = 24
        self.layer1 = self._make_layer(out_channels[0], num_blocks[0])
        self.layer2 = self._make_layer(out_channels[1], num_blocks[1])
        self.layer3 = self._make_layer(out_channels[2], num_blocks[2])
        self.conv2 = nn.Conv2d(out_channels[2], out_channels[3], 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels[3])
        self.linear = nn.Linear(out_channels[3], num_classes)

    def _make_layer(self, out_channels: int, num_blocks: int) -> nn.Sequential:
        """One ``DownBlock`` followed by ``num_blocks`` ``BasicBlock``s."""
        layers: list[nn.Module] = [DownBlock(self.in_channels, out_channels)]
        layers += [BasicBlock(out_channels) for _ in range(num_blocks)]
        self.in_channels = out_channels
        return nn.Sequential(*layers)

    def forward_feature_list(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return ``[f0 (stem), f1, f2, f3 (layer3, before conv2), pooled (after conv2/bn2/ReLU)]``."""
        f0 = F.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(f0)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        out = F.relu(self.bn2(self.conv2(f3)))
        pooled = F.avg_pool2d(out, 4).flatten(1)
        return [f0, f1, f2, f3, pooled]


@register_model("ShuffleV2")
def shuffle_v2(num_classes: int = 100, **kwargs) -> ShuffleNetV2:
    """Reference ``ShuffleV2`` (net size 1.0): out channels (116, 232, 464, 1024), blocks (3, 7, 3)."""
    return ShuffleNetV2(num_classes=num_classes, out_channels=(116, 232, 464, 1024), num_blocks=(3, 7, 3), **kwargs)


@register_model("ShuffleV2_1_5")
def shuffle_v2_1_5(num_classes: int = 100, **kwargs) -> ShuffleNetV2:
    """SimKD ``ShuffleV2_1_5`` (net size 1.5): out channels (176, 352, 704, 1024), blocks (3, 7, 3)."""
    return ShuffleNetV2(num_classes=num_classes, out_channels=(176, 352, 704, 1024), num_blocks=(3, 7, 3), **kwargs)
