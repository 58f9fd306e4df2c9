"""Per-channel normalisation statistics: the known datasets' constants, or statistics computed from the data."""

from __future__ import annotations

import re

import torch

Stats = tuple[tuple[float, float, float], tuple[float, float, float]]

KNOWN_STATISTICS: dict[str, Stats] = {
    # CIFAR-100: the constants of SimKD / RepDistiller dataset/cifar100.py (spec section 4.2)
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    # CIFAR-10: per-channel mean and std of the 50,000 original training images (pixel values / 255)
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    # ImageNet: the torchvision constants the references use (spec section 4.2)
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def known_statistics(dataset_name: str | None) -> tuple[str, Stats] | None:
    """The constants for a dataset recognised by name (``uoft-cs/cifar100``, ``ILSVRC/imagenet-1k``, ...)."""
    if not dataset_name:
        return None
    key = re.sub(r"[^a-z0-9]", "", dataset_name.lower())
    for name in ("cifar100", "cifar10", "imagenet"):  # cifar100 before its prefix cifar10
        if name in key:
            return name, KNOWN_STATISTICS[name]
    return None


def compute_statistics(images: torch.Tensor) -> Stats:
    """Per-channel mean and std of a uint8 ``[N, C, H, W]`` array, in [0, 1] units."""
    x = images.to(torch.float64) / 255.0
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3), unbiased=False)
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())
