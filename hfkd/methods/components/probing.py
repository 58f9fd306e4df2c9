"""Probing the models with the example batch (spec 1.4 step 2): the feature shapes that size a method's modules."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...errors import RecipeError
from ...models.outputs import ClassifierOutput
from .feature_lists import pooled


def example_pixels(
    model: nn.Module, example_batch: dict[str, Any] | None, method: str, role: str = "student"
) -> torch.Tensor:
    """The images that size a method's modules: the example training batch ``[B, 3, H, W]``, else zeros
    ``[2, *input_size]`` at the input size ``model`` declares (``role`` names the model in the refusal: "student" or
    "teacher").

    The fallback keeps an evaluation-only trainer (no training set, hence no example batch) buildable. Raises
    ``RecipeError`` when there is no batch and the model declares no input size either.
    """
    if example_batch is not None and example_batch.get("pixel_values") is not None:
        return example_batch["pixel_values"]
    size = getattr(model, "input_size", None) or (getattr(model, "pretrained_cfg", None) or {}).get("input_size")
    if size is None:
        raise RecipeError(
            f"{method} sizes its modules from a training batch, but the trainer was given no train_dataset and the "
            f"{role} declares no input size; pass train_dataset"
        )
    return torch.zeros(2, *size, device=next(model.parameters()).device)


@torch.no_grad()
def probe(model: nn.Module, pixel_values: torch.Tensor) -> ClassifierOutput:
    """``model``'s logits and features on the example batch, in eval mode (BatchNorm statistics untouched).

    The batch is moved to the model's device and floating dtype; the model's train/eval mode is restored.
    """
    parameter = next(model.parameters(), None)
    if parameter is not None:
        dtype = parameter.dtype if parameter.dtype.is_floating_point else pixel_values.dtype
        pixel_values = pixel_values.to(device=parameter.device, dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        return model(pixel_values, return_features=True)
    finally:
        model.train(was_training)


def probe_features(model: nn.Module, pixel_values: torch.Tensor) -> list[torch.Size]:
    """Per-sample shapes of ``model``'s feature list on the example batch."""
    return [f.shape[1:] for f in probe(model, pixel_values).feats]


def probe_pair(
    student: nn.Module, teacher: nn.Module, example_batch: dict[str, Any] | None, method: str
) -> tuple[list[torch.Size], list[torch.Size]]:
    """Per-sample feature shapes of student and teacher on the example batch."""
    pixels = example_pixels(student, example_batch, method)
    return probe_features(student, pixels), probe_features(teacher, pixels)


def pooled_width(model: nn.Module, example_batch: dict[str, Any] | None, method: str, role: str = "student") -> int:
    """Length of ``model``'s pooled vector, probed on the example batch or at its own input size (``role``: the
    model's name in the refusal of :func:`example_pixels`)."""
    return pooled(probe_features(model, example_pixels(model, example_batch, method, role))).numel()
