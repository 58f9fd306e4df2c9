"""Augmentation and normalisation presets matching the references (spec section 4.2).

CIFAR-size images are kept as uint8 ``[B, C, H, W]`` batches and transformed a batch at a time (random crop with
zero padding 4, horizontal flip, normalise), on whatever device the batch is on. A batch transform is called as
``transform(images, index, epoch)``: the random crop and flip of an example are a pure function of (seed, epoch,
dataset index), so they do not depend on the process, worker or batch it lands in (see ``keyed_random``).
Large images are transformed one at a time in DataLoader workers: for training by timm's transforms
(``augmentation.train_transform``: RandomResizedCrop 224 + flip, and the recipe's timm augmentation), for
evaluation by Resize 256 + CenterCrop 224 here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .keyed_random import keyed_integers

CROP_PADDING = 4  # the references' RandomCrop(32, padding=4)


class Normalize:
    """uint8 ``[B, C, H, W]`` -> float ``(x / 255 - mean) / std``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, images: torch.Tensor, index: torch.Tensor | None = None, epoch: int = 0) -> torch.Tensor:
        mean, std = self.mean.to(images.device), self.std.to(images.device)
        return (images.to(torch.float32) / 255.0 - mean) / std


class RandomCropFlip:
    """``RandomCrop(size, padding)`` with zero padding and ``RandomHorizontalFlip(0.5)``, per image, on a batch.

    Offsets are uniform in ``[0, 2 * padding]`` as in torchvision's RandomCrop, and each image is flipped with
    probability 1/2; both are drawn from (seed, epoch, dataset index), so an epoch gives every example a fresh draw
    and a repeated run (or a resumed one) the same draw. Zero padding is applied to the raw pixels, before
    normalisation, as in the references.
    """

    def __init__(self, padding: int = CROP_PADDING, seed: int = 0) -> None:
        self.padding = padding
        self.seed = seed

    def __call__(self, images: torch.Tensor, index: torch.Tensor, epoch: int = 0) -> torch.Tensor:
        b, _, h, w = images.shape
        p = self.padding
        padded = F.pad(images, (p, p, p, p))
        index = torch.as_tensor(index, device=images.device).view(b, 1)
        top = keyed_integers(self.seed, epoch, index, 0, 2 * p + 1)
        left = keyed_integers(self.seed, epoch, index, 1, 2 * p + 1)
        rows = top + torch.arange(h, device=images.device)  # [B, H]
        cols = left + torch.arange(w, device=images.device)  # [B, W]
        flip = keyed_integers(self.seed, epoch, index, 2, 2) == 1
        cols = torch.where(flip, cols.flip(1), cols)
        batch = torch.arange(b, device=images.device)[:, None, None]
        # advanced indices around a slice put their dims first: [B, H, W, C]
        cropped = padded[batch, :, rows[:, :, None], cols[:, None, :]]
        return cropped.permute(0, 3, 1, 2).contiguous()


class Compose:
    def __init__(self, *steps) -> None:
        self.steps = steps

    def __call__(self, images: torch.Tensor, index: torch.Tensor | None = None, epoch: int = 0) -> torch.Tensor:
        for step in self.steps:
            images = step(images, index, epoch)
        return images


def cifar_train_transform(
    mean: Sequence[float], std: Sequence[float], padding: int = CROP_PADDING, seed: int = 0
) -> Compose:
    return Compose(RandomCropFlip(padding, seed), Normalize(mean, std))


def cifar_eval_transform(mean: Sequence[float], std: Sequence[float]) -> Normalize:
    return Normalize(mean, std)


# the evaluation center crop's share of the resized short side: 224 of 256 (the references' Resize 256, CenterCrop 224)
EVAL_CROP_PCT = 224 / 256


def imagenet_eval_transform(
    mean: Sequence[float], std: Sequence[float], size: int = 224, resize: int | None = None,
    interpolation: str = "bilinear",
):
    """Resize the short side to ``resize`` (default ``int(size / 0.875)``: 256 for 224, as the image processor
    computes it) with ``interpolation``, center-crop ``size``, normalise."""
    from torchvision.transforms import v2

    resize = resize or int(size / EVAL_CROP_PCT)

    return v2.Compose(
        [
            v2.RGB(),
            v2.Resize(resize, interpolation=v2.InterpolationMode(interpolation), antialias=True),
            v2.CenterCrop(size),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )


def eval_image_processor(
    preset: str, image_size: int, mean: Sequence[float], std: Sequence[float], interpolation: str = "bilinear"
):
    """The evaluation preprocessing as a transformers image processor, saved with the exported model."""
    from transformers import ConvNextImageProcessor, ViTImageProcessor
    from transformers.image_utils import PILImageResampling

    if preset == "imagenet":
        # resize the short side to image_size / crop_pct (256 for 224), then center-crop image_size, with
        # imagenet_eval_transform's interpolation (ConvNeXt's own default is bicubic)
        return ConvNextImageProcessor(
            size={"shortest_edge": image_size}, crop_pct=EVAL_CROP_PCT,
            resample=PILImageResampling[interpolation.upper()],
            image_mean=list(mean), image_std=list(std),
        )
    return ViTImageProcessor(
        do_resize=True, size={"height": image_size, "width": image_size}, image_mean=list(mean), image_std=list(std)
    )
