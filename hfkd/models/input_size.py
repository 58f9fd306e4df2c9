"""The input size a model requires, and a check that student and teacher take the data's images, before training.

Vision transformers with fixed position embeddings take one input size only: timm's ``PatchEmbed`` with
``strict_img_size`` (``vit_tiny_patch16_224`` asserts 224x224 in its first step) and transformers' patch embeddings
(``ViTPatchEmbeddings``: "Input image size (32*32) doesn't match model (224*224)"). hfkd resizes where a model declares
that size: the data pipeline resizes the student's images to it (``prepare_datasets``), the teacher adapter the
teacher's (``adapt_teacher_inputs``). :func:`check_accepts_inputs` then runs each model once on one example, so that
any size a model still cannot take is one sentence before training rather than an error inside the first step.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import IncompatibleSetupError
from .provenance import provenance_of


def required_input_size(model: nn.Module) -> int | None:
    """The square side (pixels) a model's patch embedding requires, or None when it takes any size (convnets, timm
    ViTs built with ``dynamic_img_size``)."""
    for module in model.modules():
        if type(module).__name__ == "PatchEmbed" and getattr(module, "strict_img_size", False):  # timm
            size = getattr(module, "img_size", None)
        elif hasattr(module, "num_patches") and hasattr(module, "patch_size"):  # transformers' *PatchEmbeddings
            size = getattr(module, "image_size", None)
        else:
            continue
        if size is not None:
            return int(size[0] if isinstance(size, (tuple, list)) else size)
    return None


def check_accepts_inputs(model: nn.Module, role: str, pixel_values: torch.Tensor, dataset_name: str | None) -> None:
    """Run ``model`` (the student or the teacher, named by ``role``) once on the first example of ``pixel_values``
    (``[B, C, H, W]``, as the trainer will feed it); raises ``IncompatibleSetupError`` naming the model, the input size
    and the model's own complaint when it cannot take it."""
    example = pixel_values[:1]
    device = next((p.device for p in model.parameters()), example.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example.to(device))
    except (RuntimeError, ValueError, AssertionError) as err:
        provenance = provenance_of(model)
        name = f"the {role} {provenance.source!r}" if provenance is not None and provenance.source else f"the {role}"
        height, width = example.shape[-2:]
        required = required_input_size(model)
        needs = f" (it takes {required}x{required} only)" if required else ""
        reason = str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else type(err).__name__
        data = f"dataset {dataset_name!r}" if dataset_name else "the dataset"
        raise IncompatibleSetupError(
            f"{name} cannot take the {height}x{width}-pixel inputs of {data}{needs}: {reason}; choose a model for "
            f"this input size or set transform_preset: imagenet to resize the images"
        ) from None
    finally:
        model.train(was_training)
