"""Which entries of a model's feature list a method reads (spec section 1.2), and the check that they are maps.

Every model gives ``feats = [f0 (stem), f1 .. fL (stage outputs), pooled]`` (DESIGN.md, "Models"); these names say
which slice a method means, so ``feats[1:-1]`` and ``feats[-2]`` are written once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...errors import IncompatibleSetupError
from ...models.outputs import ClassifierOutput


def stage_maps(feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``feats[1:-1]``: every stage map, without the stem and the pooled vector (AT, VID, SemCKD, NST)."""
    return list(feats[1:-1])


def last_map(feats: Sequence[torch.Tensor]) -> torch.Tensor:
    """``feats[-2]``: the last stage map before pooling (SP, SimKD)."""
    return feats[-2]


def pooled(feats: Sequence[torch.Tensor]) -> torch.Tensor:
    """``feats[-1]``: the pooled vector the classifier consumes (CRD, SRRL, CC, RKD, PKT)."""
    return feats[-1]


def pooled_fp32(output: ClassifierOutput) -> torch.Tensor:
    """The pooled vector flattened to ``[B, C]`` in fp32, the input of the pooled-feature losses."""
    return pooled(output.feats).float().flatten(1)


def _has_spatial(shape: torch.Size) -> bool:
    return len(shape) == 3


def require_maps(shapes: Sequence[torch.Size], who: str, method: str, what: str) -> None:
    """One-sentence error when a method needs 4-D feature maps and the model gives something else (tokens).

    ``shapes`` are per-sample shapes (``[C, H, W]`` for a map); raises ``IncompatibleSetupError`` naming the bad ones.
    """
    bad = [tuple(s) for s in shapes if not _has_spatial(s)]
    if bad:
        raise IncompatibleSetupError(
            f"{method} needs {what} of the {who} to be feature maps [C, H, W], but they have shapes {bad}; "
            f"use a convolutional {who} or a method that reads pooled features or logits (kd, crd, rkd, pkt, dist)"
        )
