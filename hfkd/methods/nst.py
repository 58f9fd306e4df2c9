"""Neuron Selectivity Transfer: Huang & Wang, "Like What You Like: Knowledge Distill via Neuron Selectivity
Transfer", arXiv 1707.01219, 2017; RepDistiller's version (spec section 3, nst)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .layout import spatial_vectors
from .pairs import StageMapPairMethod
from .precision import full_precision
from .citation import Paper
from .registry import register_method


def channel_vectors(feature: torch.Tensor) -> torch.Tensor:
    """``[B, C, H*W]`` in fp32, each channel's spatial vector L2-normalised (one "neuron" distribution per channel).

    Built on a view in the map's own memory layout (``hfkd.methods.layout``): no transposing copy of a
    channels-last map, and ``bmm`` takes the strided result as a transposed matrix.
    """
    return F.normalize(spatial_vectors(feature.float()), dim=2)


def mean_poly_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean over samples and channel pairs of ``k(a_i, b_j) = (a_i . b_j)^2`` (polynomial kernel, d = 2, c = 0)."""
    with full_precision(a):
        return torch.bmm(a.float(), b.float().transpose(1, 2)).pow(2).mean()


def nst_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Squared MMD with the polynomial kernel: ``mean K(t,t) (detached) + mean K(s,s) - 2 mean K(s,t)``."""
    s, t = channel_vectors(student), channel_vectors(teacher)
    return mean_poly_kernel(t, t).detach() + mean_poly_kernel(s, s) - 2 * mean_poly_kernel(s, t)


@register_method
class NST(StageMapPairMethod):
    """Match the distributions of channel activation patterns in every zipped stage-map pair; no trainable modules."""

    name = "nst"
    paper = Paper(
        "Like What You Like: Knowledge Distill via Neuron Selectivity Transfer",
        "Zehao Huang and Naiyan Wang",
        "arXiv:1707.01219",
        2017,
        "https://arxiv.org/abs/1707.01219",
    )
    default_cls = 1.0
    default_div = 1.0
    default_beta = 50.0
    pair_loss = staticmethod(nst_loss)
