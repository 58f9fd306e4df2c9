"""Probabilistic Knowledge Transfer (PKT): match the distributions of cosine similarities within the batch.

Passalis and Tefas, "Learning Deep Representations with Probabilistic Knowledge Transfer", ECCV 2018, as in
RepDistiller (spec 3): the pooled vectors' rows are L2-normalised (eps 1e-7 added to the norm, NaN set to 0), their
cosine-similarity matrices are mapped to ``(cos + 1) / 2`` and row-normalised into distributions ``P``, and
``L = mean(P_t * log((P_t + eps) / (P_s + eps)))`` over all ``B x B`` entries. No trainable modules.
"""

from __future__ import annotations

from typing import Any

import torch

from ..models.outputs import ClassifierOutput
from .base import DistillationMethod, Paper
from .components.feature_lists import pooled_fp32
from .components.full_precision import full_precision
from .registry import register_method

PKT_EPS = 1e-7


def similarity_distribution(x: torch.Tensor, eps: float = PKT_EPS) -> torch.Tensor:
    """Rows of ``(cos + 1) / 2`` between the rows of ``x`` ``[B, D]``, each row normalised to sum to 1."""
    x = x.float()
    with full_precision(x):
        x = x / (x.norm(dim=1, keepdim=True) + eps)
        x = torch.where(torch.isnan(x), torch.zeros_like(x), x)
        similarity = (x @ x.T + 1.0) / 2.0
        return similarity / similarity.sum(dim=1, keepdim=True)


def pkt_loss(f_s: torch.Tensor, f_t: torch.Tensor, eps: float = PKT_EPS) -> torch.Tensor:
    """``mean(P_t * log((P_t + eps) / (P_s + eps)))`` between the batch similarity distributions (spec 3)."""
    p_s, p_t = similarity_distribution(f_s, eps), similarity_distribution(f_t, eps)
    return (p_t * torch.log((p_t + eps) / (p_s + eps))).mean()


@register_method
class PKT(DistillationMethod):
    """KL-like divergence between student and teacher cosine-similarity distributions of the pooled vectors."""

    name = "pkt"
    paper = Paper(
        "Learning Deep Representations with Probabilistic Knowledge Transfer",
        "Nikolaos Passalis and Anastasios Tefas",
        "European Conference on Computer Vision (ECCV)",
        2018,
        "https://arxiv.org/abs/1803.10837",
    )
    default_beta = 30000.0
    needs_student_features = True
    needs_teacher_features = True

    def forward(
        self, student_out: ClassifierOutput, teacher_out: ClassifierOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        return {"pkt": pkt_loss(pooled_fp32(student_out), pooled_fp32(teacher_out))}
