"""The exported student as a transformers model: ``from_pretrained``, ``pipeline("image-classification")``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from . import zoo  # noqa: F401  (registers the zoo architectures)
from .configuration_hfkd import HfkdConfig
from .registry import is_zoo_model, zoo_entrypoint
from .timm_adapter import TimmFeatureClassifier

TIMM_PREFIX = "timm:"


@dataclass
class HfkdImageClassifierOutput(ModelOutput):
    """``loss`` (with labels), ``logits``, and ``feats`` (the reference feature list) when asked for."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    feats: tuple[torch.FloatTensor, ...] | None = None


def build_architecture(architecture: str, num_classes: int, kwargs: dict | None = None) -> nn.Module:
    """A randomly initialised zoo or timm architecture with ``num_classes`` outputs."""
    kwargs = dict(kwargs or {})
    if architecture.startswith(TIMM_PREFIX):
        try:
            import timm
        except ImportError as err:  # pragma: no cover - timm is a dependency of hfkd
            raise ImportError(f"architecture {architecture!r} needs timm: pip install timm") from err
        model = timm.create_model(architecture[len(TIMM_PREFIX) :], pretrained=False, num_classes=num_classes, **kwargs)
        return TimmFeatureClassifier(model)
    if is_zoo_model(architecture):
        return zoo_entrypoint(architecture)(num_classes=num_classes, **kwargs)
    raise ValueError(f"unknown hfkd architecture {architecture!r}")


class HfkdPreTrainedModel(PreTrainedModel):
    config_class = HfkdConfig
    base_model_prefix = "hfkd"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def _init_weights(self, module: nn.Module) -> None:
        """The architectures initialise themselves with the reference conventions; nothing to redo here."""


class HfkdForImageClassification(HfkdPreTrainedModel):
    """A distilled student: its architecture (``self.model``) and, for some methods, a prediction head."""

    def __init__(self, config: HfkdConfig, model: nn.Module | None = None) -> None:
        super().__init__(config)
        self.model = model if model is not None else build_architecture(
            config.architecture, config.num_labels, config.architecture_kwargs
        )
        self.post_init()

    @property
    def classifier(self) -> nn.Module:
        return self.model.classifier

    @property
    def num_classes(self) -> int:
        return self.config.num_labels

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_features: bool = False,
        **kwargs,
    ) -> HfkdImageClassifierOutput:
        out = self.model(pixel_values, return_features=return_features)
        loss = F.cross_entropy(out.logits.float(), labels) if labels is not None else None
        feats = tuple(out.feats) if out.feats is not None else None
        return HfkdImageClassifierOutput(loss=loss, logits=out.logits, feats=feats)
