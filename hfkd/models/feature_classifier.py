"""Base class of every hfkd model: logits plus the reference feature list, and a named classifier head."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from .outputs import ClassifierOutput


class FeatureClassifier(nn.Module):
    """A classifier whose forward can also return ``[f0, f1 .. fL, pooled]`` (spec section 1.1).

    Subclasses implement :meth:`forward_feature_list` and set ``head_name`` to the attribute that holds the final
    classifier under its reference key name (``fc``, ``classifier``, ``linear``), so state_dict keys stay those of
    the released checkpoints while ``model.classifier`` always means "the module mapping pooled -> logits".
    """

    head_name: ClassVar[str] = "fc"
    # input resolution the architecture is built for (timm's pretrained_cfg idea)
    input_size: ClassVar[tuple[int, int, int]] = (3, 32, 32)

    @property
    def classifier(self) -> nn.Module:
        return self._modules[self.head_name]

    @property
    def num_classes(self) -> int:
        return _linear_of(self.classifier).out_features

    @property
    def num_features(self) -> int:
        """Width of the pooled vector the classifier consumes."""
        return _linear_of(self.classifier).in_features

    def forward_feature_list(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return ``[f0, f1 .. fL, pooled]``; ``pooled`` is ``[B, num_features]``."""
        raise NotImplementedError

    def forward(self, pixel_values: torch.Tensor, return_features: bool = False) -> ClassifierOutput:
        feats = self.forward_feature_list(pixel_values)
        logits = self.classifier(feats[-1])
        return ClassifierOutput(logits=logits, feats=feats if return_features else None)


def _linear_of(head: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` in a head (the head is a Linear or a Sequential ending in one)."""
    if isinstance(head, nn.Linear):
        return head
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise TypeError(f"classifier head {type(head).__name__} contains no nn.Linear")
    return linears[-1]
