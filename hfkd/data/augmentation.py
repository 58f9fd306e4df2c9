"""Augmentation from timm, with keyed randomness: per-image transforms (``timm.data.create_transform``) and batch
Mixup / CutMix (``timm.data.Mixup``), configured by the recipe keys of timm's ``train.py``.

timm's transforms and Mixup draw from the global ``random`` / NumPy / torch generators. hfkd runs each image's
transform, and each batch's Mixup, with those generators seeded from ``keyed_hash(seed, epoch, index)`` (the
example's dataset index; for a batch, its first example's), so a view and a mix do not depend on the process,
DataLoader worker or batch an example lands in, and a resumed run draws what the uninterrupted one drew.

With distillation the trainer mixes the batch before the teacher runs, so the teacher sees exactly the student's
(mixed) images — Beyer et al., CVPR 2022, "consistent" teaching — and the ``cls`` term learns the mixed targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..errors import RecipeError
from .images import to_rgb
from .keyed_random import keyed_hash, seeded_global_generators

INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "random")
# the keyed_hash slot of a batch's Mixup draw (slot 0..2 are the cifar preset's crop and flip)
MIXUP_SLOT = 7


def mixup_enabled(data_args) -> bool:
    return data_args.mixup_alpha > 0 or data_args.cutmix_alpha > 0


def per_image_augmentation(data_args) -> list[str]:
    """The per-image timm keys a recipe set away from their defaults (they need the 'imagenet' preset)."""
    changed = {
        "auto_augment": data_args.auto_augment is not None,
        "color_jitter": data_args.color_jitter != 0,
        "reprob": data_args.reprob != 0,
        "train_crop_scale": data_args.train_crop_scale is not None,
        "interpolation": data_args.interpolation != "bilinear",
    }
    return [key for key, is_set in changed.items() if is_set]


def check_augmentation(data_args) -> None:
    """Raise ``RecipeError`` (one sentence) for an augmentation key timm would reject or that cannot apply; the
    numeric ranges (strengths >= 0, probabilities in [0, 1]) are checked before, with every numeric key
    (``recipe_ranges``)."""
    if data_args.interpolation not in INTERPOLATIONS:
        raise RecipeError(f"interpolation {data_args.interpolation!r} is not one of {', '.join(INTERPOLATIONS)}")
    scale = data_args.train_crop_scale
    if scale is not None and not (len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
        raise RecipeError(f"train_crop_scale must be [min, max] with 0 < min <= max <= 1, got {list(scale)}")
    if data_args.auto_augment is not None:
        _check_policy(data_args.auto_augment)
    device_incompatible = [k for k in per_image_augmentation(data_args) if k not in ("train_crop_scale", "interpolation")]
    if getattr(data_args, "decode_on_device", False) and (device_incompatible or data_args.streaming
                                                          or data_args.transform_preset == "cifar"):
        reasons = device_incompatible + (["streaming"] if data_args.streaming else []) + (
            ["transform_preset: cifar"] if data_args.transform_preset == "cifar" else [])
        raise RecipeError(
            f"decode_on_device crops and flips on the device after decoding JPEGs, so it cannot be combined with "
            f"{', '.join(reasons)}; drop them or set decode_on_device: false"
        )
    if data_args.transform_preset == "cifar" and per_image_augmentation(data_args):
        raise RecipeError(
            f"{', '.join(per_image_augmentation(data_args))} apply to the 'imagenet' preset's per-image transforms, "
            f"not the 'cifar' preset; set transform_preset: imagenet or drop them (mixup and cutmix work with both)"
        )


def _check_policy(policy: str) -> None:
    from timm.data.auto_augment import (
        augment_and_mix_transform,
        auto_augment_transform,
        rand_augment_transform,
    )

    hparams = {"translate_const": 100, "img_mean": (124, 116, 104)}
    build = (rand_augment_transform if policy.startswith("rand") else
             augment_and_mix_transform if policy.startswith("augmix") else auto_augment_transform)
    try:
        build(policy, hparams)
    except (AssertionError, ValueError, KeyError, IndexError) as err:
        raise RecipeError(
            f"auto_augment {policy!r} is not a timm policy: use e.g. 'rand-m9-mstd0.5-inc1', 'augmix-m5-w4-d2', "
            f"'original' or 'v0'"
        ) from err


def train_transform(data_args, image_size: int, mean: Sequence[float], std: Sequence[float]):
    """timm's ImageNet training transform for one PIL image -> float ``[3, image_size, image_size]``.

    RandomResizedCrop (scale ``train_crop_scale``, default (0.08, 1), ratio (3/4, 4/3)) + horizontal flip, then
    ``auto_augment`` or ``color_jitter``, normalisation and random erasing (``reprob``, timm's 'pixel' mode as in its
    train.py). With every key at its default this is the references' RandomResizedCrop(224) + flip (spec 4.2).
    """
    from timm.data import create_transform

    transform = create_transform(
        image_size,
        is_training=True,
        scale=tuple(data_args.train_crop_scale) if data_args.train_crop_scale else None,
        color_jitter=data_args.color_jitter or None,
        auto_augment=data_args.auto_augment,
        interpolation=data_args.interpolation,
        mean=tuple(mean),
        std=tuple(std),
        re_prob=data_args.reprob,
        re_mode="pixel",
    )
    _keep_zero_bit_posterize(transform)
    return transform


def _black_when_no_bits(img, bits_to_keep, **kwargs):
    """timm's posterize, with 0 bits kept giving the black image older Pillow gave (Pillow 13 raises instead)."""
    from PIL import Image
    from timm.data.auto_augment import posterize

    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return posterize(img, bits_to_keep, **kwargs)


def _keep_zero_bit_posterize(transform) -> None:
    """timm's RandAugment / AugMix / AutoAugment 'PosterizeIncreasing' keeps 0 bits at magnitude 10 (mstd noise
    reaches it), which Pillow 13 refuses; hfkd's own note: the op is patched to keep timm's result instead of
    crashing a run mid-epoch."""
    from timm.data.auto_augment import posterize

    for step in getattr(transform, "transforms", []):
        policies = getattr(step, "policy", None) or [getattr(step, "ops", [])]
        for op in (op for ops in policies for op in ops):
            if getattr(op, "aug_fn", None) is posterize:
                op.aug_fn = _black_when_no_bits


def eval_interpolation(data_args) -> str:
    """The evaluation resize's interpolation: the training one, bilinear when training draws it at random."""
    return "bilinear" if data_args.interpolation == "random" else data_args.interpolation


def augment_image(image, transform, key: int) -> torch.Tensor:
    """``transform(image)`` (a PIL image, converted to 8-bit RGB by its bit depth, ``images.to_rgb``) with the global
    generators seeded by ``key``."""
    with seeded_global_generators(key):
        return transform(to_rgb(image))


class KeyedMixup:
    """timm's ``Mixup`` (batch mode) with its draws keyed to (seed, epoch, the batch's first example index).

    ``__call__(batch, epoch)`` takes a collated batch with ``pixel_values`` ``[B, C, H, W]`` (float, normalised),
    ``labels`` ``[B]`` (int64) and ``index`` ``[B]`` (the examples' dataset indices) and returns a new batch whose
    images are mixed with the batch reversed (lam ~ Beta(mixup_alpha) or a CutMix box ~ Beta(cutmix_alpha), with
    probability ``mixup_prob``) and whose ``labels`` are the mixed targets ``[B, num_classes]`` (float32,
    ``lam * onehot(y) + (1 - lam) * onehot(y_reversed)``; label smoothing is left to the ``cls`` term, which applies
    it to soft targets identically). timm asserts an even batch; an odd (last) batch mixes its first B-1 examples
    and keeps the last as it is.
    """

    def __init__(self, data_args, num_classes: int, seed: int = 0) -> None:
        from timm.data import Mixup

        self.seed = seed
        self.num_classes = num_classes
        self.mixup = Mixup(
            mixup_alpha=data_args.mixup_alpha, cutmix_alpha=data_args.cutmix_alpha, prob=data_args.mixup_prob,
            switch_prob=data_args.mixup_switch_prob, mode="batch", label_smoothing=0.0, num_classes=num_classes,
        )

    def key(self, index: torch.Tensor, epoch: int) -> int:
        return int(keyed_hash(self.seed, epoch, index[:1].cpu(), MIXUP_SLOT)[0])

    def __call__(self, batch: dict[str, Any], epoch: int) -> dict[str, Any]:
        if "index" not in batch:
            raise ValueError("mixup needs each batch's dataset indices ('index') to key its draws")
        pixels, labels = batch["pixel_values"].clone(), batch["labels"]
        even = len(pixels) - len(pixels) % 2
        targets = torch.nn.functional.one_hot(labels.long(), self.num_classes).to(torch.float32)
        if even:
            with seeded_global_generators(self.key(batch["index"], epoch)):
                _, mixed_targets = self.mixup(pixels[:even], labels[:even])  # mixes pixels[:even] in place
            targets[:even] = mixed_targets.to(targets.device)
        return {**batch, "pixel_values": pixels, "labels": targets}


def build_mixup(data_args, num_classes: int, seed: int) -> KeyedMixup | None:
    return KeyedMixup(data_args, num_classes, seed) if mixup_enabled(data_args) else None
