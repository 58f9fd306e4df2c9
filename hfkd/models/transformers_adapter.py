"""Any transformers image classifier behind hfkd's model contract (logits, feature list, ``classifier``)."""

from __future__ import annotations

import torch
from torch import nn

from .outputs import ClassifierOutput


class TransformersFeatureClassifier(nn.Module):
    """Wraps an ``AutoModelForImageClassification`` model.

    ``feats`` are the model's hidden states followed by the pooled vector its classifier consumes (captured with a
    forward pre-hook on ``classifier``, so ``classifier(pooled) == logits`` for any architecture with one head). For
    CNNs (ResNet, ConvNeXt) the hidden states are the stem and stage maps, matching spec section 1.1; for ViTs they are
    token sequences ``[B, N, D]``, which methods that need feature maps reject with a clear error. A DeiT with a
    distillation token has two heads and its own adapter, ``DeiTFeatureClassifier``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self._pooled: torch.Tensor | None = None
        self.classifier.register_forward_pre_hook(self._capture_pooled)

    def _capture_pooled(self, module: nn.Module, args: tuple) -> None:
        self._pooled = args[0]

    @property
    def classifier(self) -> nn.Module:
        return self.model.classifier

    @property
    def num_classes(self) -> int:
        return int(self.model.config.num_labels)

    @property
    def config(self):
        return self.model.config

    def forward(self, pixel_values: torch.Tensor, return_features: bool = False) -> ClassifierOutput:
        out = self.model(pixel_values=pixel_values, output_hidden_states=return_features, return_dict=True)
        if not return_features:
            return ClassifierOutput(logits=out.logits)
        pooled, self._pooled = self._pooled.flatten(1), None
        return ClassifierOutput(logits=out.logits, feats=[*out.hidden_states, pooled])
