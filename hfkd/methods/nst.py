"""Neuron Selectivity Transfer: Huang & Wang, "Like What You Like: Knowledge Distill via Neuron Selectivity
Transfer", arXiv 1707.01219, 2017; RepDistiller's version (spec section 3, nst).

The loss of one stage pair is the reference's: every channel's spatial vector L2-normalised
(``F.normalize(f.view(B, C, -1), dim=2)``), then ``mean K(t,t) (detached) + mean K(s,s) - 2 mean K(s,t)`` with
the polynomial kernel ``k(a_i, b_j) = (a_i . b_j)^2`` averaged over samples and channel pairs, in fp32.

It is one ``autograd.Function`` with its gradient written out, not a chain of autograd ops: built op by op, the
normalisation and the three kernels leave about fifteen passes over the ``[B, C, H*W]`` vectors in the backward
(norm, division and masking gradients, one accumulation per use of the vectors), each a full read and write of
them. Written out, the gradient is one or two matmuls and a few passes, and values and gradients are the
reference's to fp32 rounding (``tests/test_method_nst.py`` checks both against the op-by-op form).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from .base import Paper
from .components.full_precision import full_precision
from .components.memory_layout import matmuls_laid_out_like, spatial_vectors
from .components.stage_map_pairs import StageMapPairMethod
from .registry import register_method

#: ``F.normalize``'s default, which the reference uses: norms below it are clamped to it.
NORM_EPS = 1e-12


def normalised_vectors(feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(vectors, scale, unclamped)``: the ``[B, C, H*W]`` fp32 spatial vectors divided by ``scale``, their L2
    norm clamped below at ``NORM_EPS`` (as ``F.normalize`` does), and where the norm was not clamped.

    The vectors are a view in the map's own memory layout (``hfkd.methods.components.memory_layout``): a
    channels-last map is never transposed.
    """
    x = spatial_vectors(feature).float()
    if x.stride(2) == 1:
        norm = torch.linalg.vector_norm(x, dim=2, keepdim=True)
    else:  # positions strided (channels-last): vector_norm's strided reduction is slow on CPU, while squaring runs
        # elementwise in the map's own order before a plain sum (timings in BENCHMARKS.md)
        norm = x.square().sum(dim=2, keepdim=True).sqrt()
    scale = norm.clamp_min(NORM_EPS)
    # strictly above: clamp_min passes no gradient where the norm equals the bound, so F.normalize's radial term
    # vanishes there too
    return x / scale, scale, norm > NORM_EPS


def normalisation_backward(
    grad: torch.Tensor, vectors: torch.Tensor, scale: torch.Tensor, unclamped: torch.Tensor
) -> torch.Tensor:
    """The gradient with respect to ``x`` of ``v = x / max(||x||, eps)``, given ``grad`` with respect to ``v``:
    ``(grad - <grad, v> v) / scale``, without the radial term where the norm was clamped (there the scale is a
    constant). Works in place on ``grad``."""
    radial = (grad * vectors).sum(dim=2, keepdim=True) * unclamped
    return grad.addcmul_(radial, vectors, value=-1).div_(scale)


def as_map(vectors: torch.Tensor, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
    """``[B, C, H*W]`` vectors (in either layout) back as the ``[B, C, H, W]`` map they came from, in its dtype."""
    return vectors.view(shape).to(dtype)


def uses_position_grams(positions: int, c_s: int, c_t: int) -> bool:
    """Whether two ``[P, P]`` Grams over positions (``P^2 (C_s + C_t)`` multiply-adds) are less matmul work than the
    three ``[C, C]`` channel kernels (``P (C_s^2 + C_t^2 + C_s C_t)``): stages with fewer positions than channels."""
    return positions * (c_s + c_t) < c_s * c_s + c_t * c_t + c_s * c_t


class NeuronSelectivityMMD(torch.autograd.Function):
    """``nst_loss`` of one stage pair with its gradient written out (the module docstring says why).

    For the ``[C, P]`` vector matrices A (student) and B (teacher) of one sample, the channel kernels are
    ``A A^T``, ``A B^T``, ``B B^T`` and each kernel mean is ``||X Y^T||^2 / (C_x C_y)``. Since
    ``||A B^T||^2 = <A^T A, B^T B>``, the same means come from the position Grams ``G_a = A^T A / C_s``,
    ``G_b = B^T B / C_t``; the cheaper form is used (``uses_position_grams``). Gradients, with ``N`` samples:
    ``dL/dA = 4 / (N C_s) A (G_a - G_b) = 4 / (N C_s) (A A^T A / C_s - A B^T B / C_t)`` and, from the cross term only
    (``K(t,t)`` is detached, spec 3), ``dL/dB = -4 / (N C_t) B G_a = -4 / (N C_t) (A B^T)^T A / C_s``.
    """

    @staticmethod
    def forward(ctx, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        with full_precision(student):
            a, a_scale, a_unclamped = normalised_vectors(student)
            b, b_scale, b_unclamped = normalised_vectors(teacher)
            samples, c_s, positions = a.shape
            c_t = b.shape[1]
            ctx.position_grams = uses_position_grams(positions, c_s, c_t)
            if ctx.position_grams:
                gram_a = torch.bmm(a.mT, a) / c_s
                gram_b = torch.bmm(b.mT, b) / c_t
                value = ((gram_b * gram_b).sum() + (gram_a * gram_a).sum() - 2 * (gram_a * gram_b).sum()) / samples
                kernels = (gram_a, gram_b)
            else:
                k_aa, k_ab, k_bb = torch.bmm(a, a.mT), torch.bmm(a, b.mT), torch.bmm(b, b.mT)
                value = k_bb.pow(2).mean() + k_aa.pow(2).mean() - 2 * k_ab.pow(2).mean()
                kernels = (k_aa, k_ab)
        ctx.maps = ((student.shape, student.dtype), (teacher.shape, teacher.dtype))
        ctx.save_for_backward(a, a_scale, a_unclamped, b, b_scale, b_unclamped, *kernels)
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_value: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        a, a_scale, a_unclamped, b, b_scale, b_unclamped, k1, k2 = ctx.saved_tensors
        samples, c_s = a.shape[:2]
        c_t = b.shape[1]
        grad_student = grad_teacher = None
        with full_precision(a):
            if ctx.needs_input_grad[0]:
                coef = grad_value * 4 / (samples * c_s)
                if ctx.position_grams:  # A (G_a - G_b)
                    terms = [(a, (k1 - k2) * coef)]
                else:  # A A^T A / C_s - A B^T B / C_t
                    terms = [(k1 * (coef / c_s), a), (k2 * (-coef / c_t), b)]
                grad = matmuls_laid_out_like(a, terms)
                grad_student = as_map(normalisation_backward(grad, a, a_scale, a_unclamped), *ctx.maps[0])
            if ctx.needs_input_grad[1]:
                coef = grad_value * -4 / (samples * c_t)
                if ctx.position_grams:  # B G_a
                    terms = [(b, k1 * coef)]
                else:  # (A B^T)^T A / C_s
                    terms = [(k2.mT * (coef / c_s), a)]
                grad = matmuls_laid_out_like(b, terms)
                grad_teacher = as_map(normalisation_backward(grad, b, b_scale, b_unclamped), *ctx.maps[1])
        return grad_student, grad_teacher


def nst_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Squared MMD with the polynomial kernel between the student's and the teacher's channel vectors of one
    stage pair (fp32 whatever the maps' dtype)."""
    return NeuronSelectivityMMD.apply(student, teacher)


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
