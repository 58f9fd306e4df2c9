"""Attention Transfer: Zagoruyko & Komodakis, "Paying More Attention to Attention: Improving the Performance of
Convolutional Neural Networks via Attention Transfer", ICLR 2017 (spec section 2.3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Paper
from .components.memory_layout import channel_view
from .components.stage_map_pairs import StageMapPairMethod
from .registry import register_method


def attention_map(feature: torch.Tensor) -> torch.Tensor:
    """``mean_c(f^2)`` (p = 2, the MEAN over channels) flattened to ``[B, H*W]``, L2-normalised per sample.

    ``mean_c(f^2)`` is computed as ``||f||_c^2 / C``, accumulated in fp32 from the (possibly bf16) map and reduced in
    the map's own memory layout, so the gradient comes back in that layout (``hfkd.methods.components.memory_layout``).
    """
    view, channel_dim = channel_view(feature)
    energy = torch.linalg.vector_norm(view, dim=channel_dim, dtype=torch.float32).pow(2) / feature.shape[1]
    return F.normalize(energy.flatten(1), dim=1)


def attention_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over ``B*H*W`` of the squared difference of the two attention maps (maps already aligned)."""
    return (attention_map(student) - attention_map(teacher)).pow(2).mean()


@register_method
class AT(StageMapPairMethod):
    """Match spatial attention maps of every zipped stage-map pair; no trainable modules."""

    name = "at"
    paper = Paper(
        "Paying More Attention to Attention: Improving the Performance of Convolutional Neural Networks via Attention Transfer",
        "Sergey Zagoruyko and Nikos Komodakis",
        "International Conference on Learning Representations (ICLR)",
        2017,
        "https://arxiv.org/abs/1612.03928",
    )
    default_cls = 1.0
    default_div = 1.0
    default_beta = 1000.0
    pair_loss = staticmethod(attention_loss)
