"""The exported student as a transformers model: ``from_pretrained``, ``pipeline("image-classification")``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .zoo import ZOO_CLASSES  # noqa: F401  (registers the zoo architectures)
from .configuration_hfkd import HfkdConfig
from .prediction_heads import build_prediction_head
from .registry import is_zoo_model, zoo_entrypoint
from .timm_adapter import TimmFeatureClassifier
from .transformers_adapter import TransformersFeatureClassifier

TIMM_PREFIX = "timm:"
# a transformers image classifier, rebuilt from its config (``architecture_kwargs = {"config": config.to_dict()}``);
# used when a method adds a prediction head, which a native transformers export cannot carry
TRANSFORMERS_ARCHITECTURE = "transformers"


@dataclass
class HfkdImageClassifierOutput(ModelOutput):
    """``loss`` (with labels), ``logits``, and ``feats`` (the reference feature list) when asked for."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    feats: tuple[torch.FloatTensor, ...] | None = None


def build_architecture(architecture: str, num_classes: int, kwargs: dict | None = None) -> nn.Module:
    """A randomly initialised zoo, timm or transformers architecture with ``num_classes`` outputs."""
    kwargs = dict(kwargs or {})
    if architecture == TRANSFORMERS_ARCHITECTURE:
        from transformers import AutoConfig, AutoModelForImageClassification

        values = dict(kwargs["config"])
        config = AutoConfig.for_model(values.pop("model_type"), **{**values, "num_labels": num_classes})
        return TransformersFeatureClassifier(AutoModelForImageClassification.from_config(config))
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
    """A distilled student: its architecture (``self.model``) and, for some methods, a prediction head.

    With a head (``config.prediction_head``, e.g. SimKD's projector + reused teacher classifier) the logits are
    ``head(feats[-2])``: the head reads the architecture's last feature map, and the architecture's own classifier
    is not used. ``feats[-1]`` and ``classifier`` then describe the head (its pooled vector and its Linear), so the
    export still keeps the model contract "``classifier`` maps ``feats[-1]`` to the logits".
    """

    def __init__(self, config: HfkdConfig, model: nn.Module | None = None, head: nn.Module | None = None) -> None:
        super().__init__(config)
        self.model = model if model is not None else build_architecture(
            config.architecture, config.num_labels, config.architecture_kwargs
        )
        if head is None and config.prediction_head:
            head = build_prediction_head(config.prediction_head)
        self.head = head
        self.post_init()

    @property
    def classifier(self) -> nn.Module:
        return self.head.classifier if self.head is not None else self.model.classifier

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
        if self.head is None:
            out = self.model(pixel_values, return_features=return_features)
            logits, feats = out.logits, out.feats
        else:
            feats = self.model(pixel_values, return_features=True).feats
            pooled = self.head.forward_pooled(feats[-2])
            logits = self.head.classifier(pooled)
            feats = [*feats[:-1], pooled] if return_features else None
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        feats = tuple(feats) if feats is not None else None
        return HfkdImageClassifierOutput(loss=loss, logits=logits, feats=feats)
