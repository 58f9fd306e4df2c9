"""The batch similarity (Gram) matrix of flattened features, as SP defines it and SemCKD reuses it."""

from __future__ import annotations

import torch

from .full_precision import full_precision


def sample_similarity(feature: torch.Tensor) -> torch.Tensor:
    """``F F^T`` ``[B, B]`` in fp32 for a feature ``[B, ...]`` flattened to ``F`` ``[B, C*H*W]``, autocast off.

    Entry ``[a, b]`` is the dot product of samples a and b. Tung and Mori, "Similarity-Preserving Knowledge
    Distillation", ICCV 2019 (spec 2.4), before its row normalisation; SemCKD embeds its rows (spec 2.7). Computed
    with autocast off because the Gram of a large map overflows fp16.
    """
    flat = feature.float().flatten(1)
    with full_precision(flat):
        return flat @ flat.t()
