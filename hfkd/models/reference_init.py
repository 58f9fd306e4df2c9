"""The weight initialisations of the reference CIFAR models (spec section 6, "Init conventions")."""

import torch.nn as nn


def init_kaiming_fan_out(model: nn.Module) -> None:
    """ResNet and RepDistiller's ResNet50: Kaiming-normal (fan_out, relu) convs, BatchNorm weight 1 and bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def init_normal_fan_out(model: nn.Module, linear_std: float | None = 0.01) -> None:
    """VGG, MobileNetV2 and WRN: conv weights N(0, 2 / (k*k*C_out)) with zero bias, BatchNorm 1 / 0, and Linear
    weights N(0, linear_std) with zero bias (WRN: ``linear_std=None`` keeps PyTorch's default Linear weights)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, (2.0 / fan) ** 0.5)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if linear_std is not None:
                nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)
