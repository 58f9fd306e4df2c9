"""DIST: distillation from a stronger teacher by matching Pearson correlations of class probabilities.

Huang, You, Wang, Qian and Xu, "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022 (spec 10.4). Exact
KL matching is hard when the teacher is much stronger; DIST only asks the student to preserve the teacher's
*relations*: the inter-class relation (per sample, Pearson over classes) and the intra-class relation (per class,
Pearson over the samples of the batch), on ``p = softmax(z / tau)``.

The intra-class term correlates over the batch each process sees (the per-device batch under DDP, as in the
authors' code), so its value depends on ``per_device_train_batch_size``, not on the global batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models.outputs import ClassifierOutput
from .base import DistillationMethod, Paper
from .registry import register_method

# added to the product of the norms, as in the authors' cosine similarity
PEARSON_EPS = 1e-8


def pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = PEARSON_EPS) -> torch.Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b``: cosine of the mean-centred rows."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float, gamma: float, temperature: float
) -> torch.Tensor:
    """``tau^2 * (beta * (1 - mean_b rho(p_s[b], p_t[b])) + gamma * (1 - mean_c rho(p_s[:, c], p_t[:, c])))``."""
    tau = float(temperature)
    p_s = F.softmax(student_logits.float() / tau, dim=1)
    p_t = F.softmax(teacher_logits.float() / tau, dim=1)
    inter = 1.0 - pearson_rows(p_s, p_t).mean()
    intra = 1.0 - pearson_rows(p_s.t(), p_t.t()).mean()
    return tau * tau * (beta * inter + gamma * intra)


@register_method
class DIST(DistillationMethod):
    """DIST as one loss term ``dist`` at ``kd_temperature`` (tau), weighted inside by ``dist_beta``/``dist_gamma``.

    Defaults ``cls 1, div 0, beta 1`` with ``dist_beta = dist_gamma = 2`` and tau 4 are the paper's CIFAR-100 setting
    (ImageNet: 1, 1, tau 1).
    """

    name = "dist"
    paper = Paper(
        "Knowledge Distillation from A Stronger Teacher",
        "Tao Huang and Shan You and Fei Wang and Chen Qian and Chang Xu",
        "Advances in Neural Information Processing Systems (NeurIPS)",
        2022,
        "https://arxiv.org/abs/2205.10536",
    )
    default_cls = 1.0
    default_div = 0.0
    default_beta = 1.0

    def __init__(self, beta: float = 2.0, gamma: float = 2.0, temperature: float = 4.0) -> None:
        super().__init__()
        self.beta = float(beta)
        self.gamma = float(gamma)
        self.temperature = float(temperature)

    @classmethod
    def build(
        cls,
        student: nn.Module,
        teacher: nn.Module,
        config: Any,
        example_batch: dict[str, torch.Tensor] | None,
        train_dataset: Any = None,
    ) -> "DIST":
        """Reads ``dist_beta``, ``dist_gamma`` and ``kd_temperature``; no trainable parts."""
        return cls(beta=config.dist_beta, gamma=config.dist_gamma, temperature=config.kd_temperature)

    def forward(
        self, student_out: ClassifierOutput, teacher_out: ClassifierOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """``{"dist": tau^2 * (dist_beta * inter + dist_gamma * intra)}``."""
        return {"dist": dist_loss(student_out.logits, teacher_out.logits, self.beta, self.gamma, self.temperature)}

    def extra_repr(self) -> str:
        return f"beta={self.beta}, gamma={self.gamma}, temperature={self.temperature}"
