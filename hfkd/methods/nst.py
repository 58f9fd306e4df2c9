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


def channel_space_mmd(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The reference's form: ``mean K(t,t) (detached) + mean K(s,s) - 2 mean K(s,t)`` over channel pairs."""
    return mean_poly_kernel(t, t).detach() + mean_poly_kernel(s, s) - 2 * mean_poly_kernel(s, t)


def position_space_mmd(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The same value from ``[H*W, H*W]`` Gram matrices over positions instead of ``[C, C]`` kernels over channels.

    For the ``[C, P]`` matrices A, B of one sample, ``sum_ij (a_i . b_j)^2 = ||A B^T||_F^2 = <A^T A, B^T B>_F``,
    and with ``G = A^T A / C`` each kernel mean is ``<G_a, G_b>_F`` averaged over samples. Two Grams serve all three
    terms; cheaper when a stage has fewer positions than channels (the last stage of a CIFAR ResNet: 64 positions,
    256 channels). The terms stay separate, ``K(t,t)`` detached, so gradients are the reference's too.
    """
    def mean_inner(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x * y).sum(dim=(1, 2)).mean()

    with full_precision(s):
        gram_s = torch.bmm(s.transpose(1, 2), s) / s.shape[1]
        gram_t = torch.bmm(t.transpose(1, 2), t) / t.shape[1]
        return mean_inner(gram_t, gram_t).detach() + mean_inner(gram_s, gram_s) - 2 * mean_inner(gram_s, gram_t)


def nst_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Squared MMD with the polynomial kernel between the student's and the teacher's channel vectors, in whichever
    of the two equal forms does less arithmetic for this stage's shape."""
    s, t = channel_vectors(student), channel_vectors(teacher)
    positions, c_s, c_t = s.shape[2], s.shape[1], t.shape[1]
    # matmul work: two [P, P] Grams (P^2 (C_s + C_t)) against three channel kernels (P (C_s^2 + C_t^2 + C_s C_t))
    if positions * (c_s + c_t) < c_s * c_s + c_t * c_t + c_s * c_t:
        return position_space_mmd(s, t)
    return channel_space_mmd(s, t)


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
