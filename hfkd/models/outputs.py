"""The output every hfkd model returns: logits, and on request the reference feature list."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ClassifierOutput:
    """Logits ``[B, num_classes]`` and, when asked for, the feature list of spec section 1.1.

    ``feats`` is ``[f0 (stem), f1 .. fL (stage outputs), pooled (2-D)]``, so ``feats[-1]`` is the vector the
    classifier consumes, ``feats[-2]`` the last stage map and ``feats[1:-1]`` every stage map.

    ``head_logits`` are the logits of a model's separate heads, by name, when it has several (a DeiT with a
    distillation token: ``{"cls": ..., "distillation": ...}``, each ``[B, num_classes]``; ``logits`` is then the
    model's own combination of them); None for a model with one head.
    """

    logits: torch.Tensor
    feats: list[torch.Tensor] | None = None
    head_logits: dict[str, torch.Tensor] | None = None

    @property
    def pooled(self) -> torch.Tensor:
        if self.feats is None:
            raise ValueError("this output was computed with return_features=False, so it has no pooled feature")
        return self.feats[-1]
