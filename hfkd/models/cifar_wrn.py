"""RepDistiller's CIFAR WideResNet (``wrn_16_1``, ``wrn_16_2``, ``wrn_40_1``, ``wrn_40_2``), spec section 6.2.

Pre-activation blocks; state_dict keys ``conv1``, ``block{g}.layer.{j}.{bn1,conv1,bn2,conv2[,convShortcut]}``,
the final ``bn1`` and the head ``fc``.
"""

import torch
from torch import nn

from .feature_classifier import FeatureClassifier
from .reference_init import init_normal_fan_out
from .registry import register_model


class WideBasicBlock(nn.Module):
    """Pre-activation block: BN -> ReLU -> conv3x3 (stride s) -> BN -> ReLU -> conv3x3, plus shortcut."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.equal_in_out = in_planes == out_planes
        self.convShortcut = (
            None
            if self.equal_in_out
            else nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, padding=0, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the raw residual sum (no activation after the add)."""
        act = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(act)))
        if self.drop_rate > 0:
            out = nn.functional.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        # identity on the raw input when widths match; otherwise the 1x1 conv sees the activated input
        shortcut = x if self.convShortcut is None else self.convShortcut(act)
        return shortcut + out


class NetworkBlock(nn.Module):
    """A group of ``nb_layers`` WideBasicBlocks kept under ``layer`` (keys ``block{g}.layer.{j}.*``)."""

    def __init__(self, nb_layers: int, in_planes: int, out_planes: int, stride: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *(
                WideBasicBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, drop_rate)
                for i in range(nb_layers)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the blocks in order."""
        return self.layer(x)


class WideResNet(FeatureClassifier):
    """WRN-depth-k for CIFAR: conv1, three pre-activation groups (strides 1, 2, 2), bn1 + ReLU, average pool, fc."""

    head_name = "fc"

    def __init__(self, depth: int, num_classes: int = 100, widen_factor: int = 1, drop_rate: float = 0.0) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WideResNet depth must be 6n+4 with n >= 1, got {depth}")
        n = (depth - 4) // 6
        channels = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(3, channels[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, channels[0], channels[1], 1, drop_rate)
        self.block2 = NetworkBlock(n, channels[1], channels[2], 2, drop_rate)
        self.block3 = NetworkBlock(n, channels[2], channels[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(channels[3])
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels[3], num_classes)

        init_normal_fan_out(self, linear_std=None)

    def forward_feature_list(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return ``[f0 raw conv1, f1..f3 raw residual sums, avgpool(relu(bn1(f3)))]``."""
        f0 = self.conv1(x)
        f1 = self.block1(f0)
        f2 = self.block2(f1)
        f3 = self.block3(f2)
        out = self.relu(self.bn1(f3))
        pooled = torch.flatten(self.avgpool(out), 1)
        return [f0, f1, f2, f3, pooled]


@register_model("wrn_16_1")
def wrn_16_1(num_classes: int = 100, **kwargs) -> WideResNet:
    """WRN-16-1."""
    return WideResNet(16, num_classes=num_classes, widen_factor=1, **kwargs)


@register_model("wrn_16_2")
def wrn_16_2(num_classes: int = 100, **kwargs) -> WideResNet:
    """WRN-16-2."""
    return WideResNet(16, num_classes=num_classes, widen_factor=2, **kwargs)


@register_model("wrn_40_1")
def wrn_40_1(num_classes: int = 100, **kwargs) -> WideResNet:
    """WRN-40-1."""
    return WideResNet(40, num_classes=num_classes, widen_factor=1, **kwargs)


@register_model("wrn_40_2")
def wrn_40_2(num_classes: int = 100, **kwargs) -> WideResNet:
    """WRN-40-2."""
    return WideResNet(40, num_classes=num_classes, widen_factor=2, **kwargs)
