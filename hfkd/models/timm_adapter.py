"""Any timm classifier behind hfkd's model contract (logits, reference-style feature list, ``classifier``)."""

from __future__ import annotations

import torch
from torch import nn

from .outputs import ClassifierOutput


class TimmFeatureClassifier(nn.Module):
    """Wraps a timm model; ``feats`` are timm's ``forward_intermediates`` maps plus the pre-logits vector.

    For a ResNet that is ``[stem, layer1 .. layer4, pooled]``, matching the order of spec section 1.1 (timm's stem
    map is taken before the max pool; the reference ImageNet ResNets take it after).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def classifier(self) -> nn.Module:
        return self.model.get_classifier()

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    @property
    def num_features(self) -> int:
        return self.model.num_features

    @property
    def pretrained_cfg(self) -> dict:
        return getattr(self.model, "pretrained_cfg", {}) or {}

    def forward(self, pixel_values: torch.Tensor, return_features: bool = False) -> ClassifierOutput:
        if return_features:
            final, intermediates = self.model.forward_intermediates(pixel_values)
        else:
            final, intermediates = self.model.forward_features(pixel_values), None
        pooled = self.model.forward_head(final, pre_logits=True)
        logits = self.classifier(pooled)
        return ClassifierOutput(logits=logits, feats=[*intermediates, pooled] if return_features else None)
