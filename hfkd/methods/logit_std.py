"""Logit standardisation (LS): KD on z-scored logits.

Sun et al., "Logit Standardization in Knowledge Distillation", CVPR 2024 (spec 10.2). Each sample's logits are
standardised over the classes, ``Z(z) = (z - mean(z)) / (1e-7 + std(z))`` with the *unbiased* std, before the
temperature softmax of the KD term, so the student matches the teacher's logit *relations* rather than their scale.
``kd_temperature`` plays the role of the paper's base temperature tau. The cross-entropy stays on the raw logits.

The z-score itself is ``hfkd.methods.components.logit_transforms.standardize_logits``, which ``kd`` and ``dkd`` also
apply with ``logit_standardization: true``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import DistillationMethod, Paper
from .components.logit_transforms import standardize_logits
from .registry import register_method


@register_method
class LogitStandardization(DistillationMethod):
    """KD with standardised student and teacher logits in the ``div`` term; no loss of its own.

    Defaults are the SimKD-style ``cls 1, div 1`` of the other baselines. The paper's CIFAR-100 KD+LS recipe is
    ``cls 0.1, div 9, kd_temperature 2`` (mdistiller's KD weights with tau = 2); set those in the recipe to match it.
    The same standardisation is available on top of ``kd`` and ``dkd`` with ``logit_standardization: true``.
    """

    name = "logit_std"
    paper = Paper(
        "Logit Standardization in Knowledge Distillation",
        "Shangquan Sun and Wenqi Ren and Jingzhi Li and Rui Wang and Xiaochun Cao",
        "IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)",
        2024,
        "https://arxiv.org/abs/2403.01427",
    )
    default_cls = 1.0
    default_div = 1.0
    default_beta = 0.0

    @classmethod
    def build(
        cls,
        student: nn.Module,
        teacher: nn.Module,
        config: Any,
        example_batch: dict[str, torch.Tensor] | None,
        train_dataset: Any = None,
    ) -> "LogitStandardization":
        """No trainable parts; the method always standardises (``logit_standardization`` is implied)."""
        return cls()

    def kd_logits(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both logit sets z-scored per sample before the trainer's tempered KL."""
        return standardize_logits(student_logits), standardize_logits(teacher_logits)
