"""The configuration of an exported hfkd student (``model_type = "hfkd"``)."""

from __future__ import annotations

from transformers import PreTrainedConfig


class HfkdConfig(PreTrainedConfig):
    """Names the student architecture and how it predicts; carries the distillation facts for the model card.

    ``architecture`` is a CIFAR zoo name (``resnet8x4``) or ``timm:<model name>``; ``architecture_kwargs`` are passed
    to its constructor. ``prediction_head`` is None when the student predicts with its own classifier, or the
    description of the head a method adds (SimKD: projector + reused teacher classifier).
    """

    model_type = "hfkd"

    architecture: str = "resnet8x4"
    architecture_kwargs: dict | None = None
    image_size: int = 32
    prediction_head: dict | None = None
    distillation: dict | None = None
