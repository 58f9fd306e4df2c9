"""CIFAR MobileNetV2 of the reference toolboxes (spec 6.4): ``MobileNetV2`` (width 0.5) and ``MobileNetV2_1_0``."""

import torch
from torch import nn

from .feature_classifier import FeatureClassifier
from .reference_init import init_normal_fan_out
from .registry import register_model

# (uses expansion T (else t = 1), channels c, repeats n, first stride s) per stage; the reference (t, c, n, s) table
# is (1,16,1,1), (T,24,2,1), (T,32,3,2), (T,64,4,2), (T,96,3,1), (T,160,3,2), (T,320,1,1): the second stage keeps
# stride 1 for 32x32 inputs
_STAGE_SETTINGS: tuple[tuple[bool, int, int, int], ...] = (
    (False, 16, 1, 1),
    (True, 24, 2, 1),
    (True, 32, 3, 2),
    (True, 64, 4, 2),
    (True, 96, 3, 1),
    (True, 160, 3, 2),
    (True, 320, 1, 1),
)


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int, stride: int) -> nn.Sequential:
    """Conv (no bias) -> BN -> ReLU, keyed ``.0`` / ``.1`` like the reference ``conv_bn`` / ``conv_1x1_bn``."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Linear-bottleneck block with all three convs (pw, dw, pw-linear), even when the expansion is 1."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_ch * expansion
        self.stride = stride
        self.use_residual = stride == 1 and in_ch == out_ch
        self.conv = nn.Sequential(
            nn.Conv2d(in_ch, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_ch, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out_ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block, adding the input when stride is 1 and the widths match."""
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(FeatureClassifier):
    """CIFAR MobileNetV2: stride-2 stem, 7 stages in ``blocks``, 1x1 ``conv2``, ``classifier = Sequential(Linear)``."""

    head_name = "classifier"

    def __init__(self, num_classes: int = 100, width_mult: float = 0.5, expansion: int = 6) -> None:
        super().__init__()
        self.width_mult = width_mult
        in_ch = int(32 * width_mult)
        self.conv1 = _conv_bn_relu(3, in_ch, 3, 2)
        self.blocks = nn.ModuleList()
        for expands, c, n, s in _STAGE_SETTINGS:
            out_ch = int(c * width_mult)
            t = expansion if expands else 1
            layers = []
            for j in range(n):
                layers.append(InvertedResidual(in_ch, out_ch, s if j == 0 else 1, t))
                in_ch = out_ch
            self.blocks.append(nn.Sequential(*layers))
        self.last_channel = int(1280 * width_mult) if width_mult > 1.0 else 1280
        self.conv2 = _conv_bn_relu(in_ch, self.last_channel, 1, 1)
        # 32x32 input -> 2x2 map before the pool; kernel 2 with ceil_mode as in the reference
        self.avgpool = nn.AvgPool2d(2, ceil_mode=True)
        self.classifier = nn.Sequential(nn.Linear(self.last_channel, num_classes))
        init_normal_fan_out(self)

    def forward_feature_list(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return ``[f0 (conv1), f1 (blocks 0-1), f2 (block 2), f3 (blocks 3-4), f4 (blocks 5-6), pooled conv2]``."""
        out = self.conv1(x)
        f0 = out
        out = self.blocks[1](self.blocks[0](out))
        f1 = out
        out = self.blocks[2](out)
        f2 = out
        out = self.blocks[4](self.blocks[3](out))
        f3 = out
        out = self.blocks[6](self.blocks[5](out))
        f4 = out
        out = self.avgpool(self.conv2(out))
        pooled = out.flatten(1)
        return [f0, f1, f2, f3, f4, pooled]


@register_model("MobileNetV2")
def mobile_half(num_classes: int = 100, **kwargs) -> MobileNetV2:
    """Reference ``mobile_half``: CIFAR MobileNetV2 with T=6 and width 0.5."""
    return MobileNetV2(num_classes=num_classes, width_mult=0.5, expansion=6, **kwargs)


@register_model("MobileNetV2_1_0")
def mobile_half_double(num_classes: int = 100, **kwargs) -> MobileNetV2:
    """SimKD ``mobile_half_double``: CIFAR MobileNetV2 with T=6 and width 1.0."""
    return MobileNetV2(num_classes=num_classes, width_mult=1.0, expansion=6, **kwargs)
