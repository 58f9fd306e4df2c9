"""What identifies a cache's teacher, data and views: content hashes and a description of the augmentation.

A cache is replayed only into a run that would have produced the same teacher inputs: the same decoded training images
and labels (``data_fingerprint``), the same keyed crops and flips (``augmentation_of``), the same teacher weights
(``teacher_fingerprint``, recorded when the cache is built; a run from the cache does not load the teacher, so it
compares the teacher's name instead).
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn

from ..data.decoded import DecodedImageDataset
from ..data.transforms import Compose, Normalize, RandomCropFlip
from ..errors import RecipeError


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    tensor = tensor.detach().to("cpu").contiguous()
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: hash its bits
        tensor = tensor.view(torch.int16)
    return tensor.numpy().tobytes()


def teacher_fingerprint(teacher: nn.Module) -> str:
    """``sha256:`` of the teacher's ``state_dict`` (names, shapes, dtypes and values of weights and buffers)."""
    digest = hashlib.sha256()
    for name, tensor in teacher.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(_tensor_bytes(tensor))
    return f"sha256:{digest.hexdigest()}"


def require_replayable(dataset: Any, preset: str) -> DecodedImageDataset:
    """The training set, when its views are a pure function of (seed, epoch, example index); else one sentence."""
    if preset != "cifar" or not isinstance(dataset, DecodedImageDataset):
        raise RecipeError(
            f"a teacher cache needs the 'cifar' transform preset, whose crops and flips are a pure function of (seed, "
            f"epoch, example index); this run uses the {preset!r} preset, whose random views cannot be replayed"
        )
    return dataset


def data_fingerprint(dataset: DecodedImageDataset) -> str:
    """``sha256:`` of the decoded uint8 training images ``[N, C, H, W]`` and their int64 labels ``[N]``."""
    digest = hashlib.sha256(f"{tuple(dataset.images.shape)};".encode())
    digest.update(_tensor_bytes(dataset.images))
    digest.update(_tensor_bytes(dataset.labels))
    return f"sha256:{digest.hexdigest()}"


def augmentation_of(dataset: DecodedImageDataset) -> dict[str, Any]:
    """The training views as data: each step of the batch transform with the settings that change its output
    (crop padding and key seed, normalisation statistics rounded to 7 digits), and the image size."""
    steps = dataset.transform.steps if isinstance(dataset.transform, Compose) else (dataset.transform,)
    described = []
    for step in steps:
        if isinstance(step, RandomCropFlip):
            described.append({"random_crop_flip": {"padding": step.padding, "seed": step.seed}})
        elif isinstance(step, Normalize):
            described.append({"normalize": {"mean": [round(float(v), 7) for v in step.mean.flatten()],
                                            "std": [round(float(v), 7) for v in step.std.flatten()]}})
        else:
            raise RecipeError(
                f"a teacher cache cannot describe the training transform {type(step).__name__}; it replays only the "
                f"'cifar' preset's keyed crop, flip and normalisation"
            )
    return {"steps": described, "image_size": int(dataset.images.shape[-1])}
