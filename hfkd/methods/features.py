"""Which features a method reads (spec section 1.2), and probing their shapes with an example batch."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def stage_maps(feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``feats[1:-1]``: every stage map, without the stem and the pooled vector (AT, VID, SemCKD, NST)."""
    return list(feats[1:-1])


def last_map(feats: Sequence[torch.Tensor]) -> torch.Tensor:
    """``feats[-2]``: the last stage map before pooling (SP, SimKD)."""
    return feats[-2]


def pooled(feats: Sequence[torch.Tensor]) -> torch.Tensor:
    """``feats[-1]``: the pooled vector the classifier consumes (CRD, SRRL, CC, RKD, PKT)."""
    return feats[-1]


@torch.no_grad()
def probe_features(model: nn.Module, pixel_values: torch.Tensor) -> list[torch.Size]:
    """Per-sample shapes of ``model``'s feature list on an example batch, run in eval mode (spec 1.4 step 2).

    The model's train/eval mode is restored afterwards; eval mode keeps BatchNorm statistics untouched.
    """
    was_training = model.training
    model.eval()
    try:
        feats = model(pixel_values, return_features=True).feats
    finally:
        model.train(was_training)
    return [f.shape[1:] for f in feats]


def _has_spatial(shape: torch.Size) -> bool:
    return len(shape) == 3


def require_maps(shapes: Sequence[torch.Size], who: str, method: str, what: str) -> None:
    """One-sentence error when a method needs 4-D feature maps and the model gives something else (tokens)."""
    bad = [tuple(s) for s in shapes if not _has_spatial(s)]
    if bad:
        from ..errors import IncompatibleSetupError

        raise IncompatibleSetupError(
            f"{method} needs {what} of the {who} to be feature maps [C, H, W], but they have shapes {bad}; "
            f"use a convolutional {who} or a method that reads pooled features or logits (kd, crd, rkd, pkt, dist)"
        )
