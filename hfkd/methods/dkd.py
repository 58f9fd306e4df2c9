"""Decoupled Knowledge Distillation (DKD): KD split into target-class and non-target-class parts.

Zhao, Cui, Song, Qiu and Liang, "Decoupled Knowledge Distillation", CVPR 2022 (spec 10.3). TCKD matches the binary
distribution ``[p_target, 1 - p_target]``; NCKD matches the softmax over the non-target classes. Weighting them
separately (``dkd_alpha``, ``dkd_beta``) frees NCKD from being suppressed by a confident teacher.

Choices against mdistiller's ``dkd_loss`` (same values, stated here):
- the target mask is a one-hot of the labels and the non-target mask its complement (mdistiller's gt / other masks);
- TCKD's binary log-probabilities are taken as ``log_softmax`` at the target and ``logsumexp`` of ``log_softmax``
  over the other classes, which equals ``log`` of the concatenated summed probabilities mathematically but never
  takes ``log(0)`` when a probability underflows in fp32;
- NCKD subtracts 1000 from the target entry of ``z / T`` (after the division by T, as mdistiller does), so the
  target's probability is exactly 0 in fp32 and contributes nothing to the KL;
- both KLs are summed over classes and the batch, times ``T^2 / B``; the warm-up ``min(epoch / dkd_warmup_epochs, 1)``
  uses the 1-based integer epoch in ``batch["epoch"]`` (mdistiller passes the same 1-based epoch).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models.outputs import ClassifierOutput
from .base import DistillationMethod, Paper
from .components.logit_transforms import standardize_logits
from .registry import register_method

# subtracted from the target entry of z / T to leave only the non-target classes in the NCKD softmax
NON_TARGET_OFFSET = 1000.0


def _summed_kl(log_p_student: torch.Tensor, log_p_teacher: torch.Tensor) -> torch.Tensor:
    """``sum_{b,k} p_t (log p_t - log p_s)``, with 0 log 0 = 0."""
    return F.kl_div(log_p_student, log_p_teacher, reduction="sum", log_target=True)


def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    beta: float,
    temperature: float,
) -> torch.Tensor:
    """``alpha * TCKD + beta * NCKD``, each a summed KL times ``T^2 / B`` (no warm-up), in fp32."""
    t = float(temperature)
    z_s, z_t = student_logits.float() / t, teacher_logits.float() / t
    # one-hot target mask by scatter (no host sync on GPU); the non-target mask is its complement
    target = torch.zeros_like(z_s, dtype=torch.bool).scatter_(1, labels.long().unsqueeze(1), True)
    scale = t * t / z_s.shape[0]

    def binary_log_probs(z: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(z, dim=1)
        log_target = log_p.masked_fill(~target, float("-inf")).logsumexp(dim=1)
        log_others = log_p.masked_fill(target, float("-inf")).logsumexp(dim=1)
        return torch.stack([log_target, log_others], dim=1)

    tckd = _summed_kl(binary_log_probs(z_s), binary_log_probs(z_t)) * scale
    offset = target.float() * NON_TARGET_OFFSET
    nckd = _summed_kl(F.log_softmax(z_s - offset, dim=1), F.log_softmax(z_t - offset, dim=1)) * scale
    return alpha * tckd + beta * nckd


def dkd_warmup_factor(epoch: int, warmup_epochs: int) -> float:
    """``min(epoch / warmup_epochs, 1)`` for the 1-based epoch; 1 when there is no warm-up."""
    if warmup_epochs <= 0:
        return 1.0
    return min(float(epoch) / float(warmup_epochs), 1.0)


@register_method
class DKD(DistillationMethod):
    """DKD as one loss term ``dkd`` = warm-up * (dkd_alpha * TCKD + dkd_beta * NCKD) at ``kd_temperature``.

    Defaults ``cls 1, div 0, beta 1`` with ``dkd_alpha 1, dkd_beta 8, kd_temperature 4, dkd_warmup_epochs 20`` are
    the paper's CIFAR-100 setting. With ``logit_standardization: true`` (Sun et al., CVPR 2024) the logits are
    z-scored first, in the DKD term and in the ``div`` KD term if that is switched on.
    """

    name = "dkd"
    needs_hard_labels = True  # the target-class mask
    paper = Paper(
        "Decoupled Knowledge Distillation",
        "Borui Zhao and Quan Cui and Renjie Song and Yiyu Qiu and Jiajun Liang",
        "IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)",
        2022,
        "https://arxiv.org/abs/2203.08679",
    )
    default_cls = 1.0
    default_div = 0.0
    default_beta = 1.0

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 8.0,
        temperature: float = 4.0,
        warmup_epochs: int = 20,
        logit_standardization: bool = False,
    ) -> None:
        super().__init__()
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.temperature = float(temperature)
        self.warmup_epochs = int(warmup_epochs)
        self.logit_standardization = bool(logit_standardization)

    @classmethod
    def build(
        cls,
        student: nn.Module,
        teacher: nn.Module,
        config: Any,
        example_batch: dict[str, torch.Tensor] | None,
        train_dataset: Any = None,
    ) -> "DKD":
        """Reads ``dkd_alpha``, ``dkd_beta``, ``dkd_warmup_epochs``, ``kd_temperature``, ``logit_standardization``."""
        return cls(
            alpha=config.dkd_alpha,
            beta=config.dkd_beta,
            temperature=config.kd_temperature,
            warmup_epochs=config.dkd_warmup_epochs,
            logit_standardization=config.logit_standardization,
        )

    def _logits(self, logits: torch.Tensor) -> torch.Tensor:
        return standardize_logits(logits) if self.logit_standardization else logits

    def kd_logits(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised too when ``logit_standardization`` is on (only used if ``div`` > 0)."""
        return self._logits(student_logits), self._logits(teacher_logits)

    def forward(
        self, student_out: ClassifierOutput, teacher_out: ClassifierOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """``{"dkd": min(epoch / warmup, 1) * (alpha * TCKD + beta * NCKD)}``."""
        loss = dkd_loss(
            self._logits(student_out.logits),
            self._logits(teacher_out.logits),
            batch["labels"],
            self.alpha,
            self.beta,
            self.temperature,
        )
        return {"dkd": dkd_warmup_factor(batch["epoch"], self.warmup_epochs) * loss}

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, beta={self.beta}, temperature={self.temperature}, "
            f"warmup_epochs={self.warmup_epochs}, logit_standardization={self.logit_standardization}"
        )
