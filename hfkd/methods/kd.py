"""Vanilla KD: no loss of its own; ``cls * CE + div * KD_T`` is the whole objective.

Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network", NIPS Deep Learning Workshop, 2015
(spec 2.1). With ``logit_standardization: true`` the KD term sees z-scored logits (Sun et al., CVPR 2024; spec 10.2),
which makes ``kd`` the same objective as ``logit_std``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import DistillationMethod, Paper
from .components.logit_transforms import standardize_logits
from .registry import register_method


@register_method
class KD(DistillationMethod):
    """KD is controlled entirely by ``div`` and ``kd_temperature`` (spec 2.1), optionally on standardised logits."""

    name = "kd"
    paper = Paper(
        "Distilling the Knowledge in a Neural Network",
        "Geoffrey Hinton and Oriol Vinyals and Jeff Dean",
        "arXiv:1503.02531",
        2015,
        "https://arxiv.org/abs/1503.02531",
    )
    default_beta = 0.0

    def __init__(self, logit_standardization: bool = False) -> None:
        super().__init__()
        self.logit_standardization = bool(logit_standardization)

    @classmethod
    def build(
        cls,
        student: nn.Module,
        teacher: nn.Module,
        config: Any,
        example_batch: dict[str, torch.Tensor] | None,
        train_dataset: Any = None,
    ) -> "KD":
        """Reads ``config.logit_standardization``; KD has no trainable parts."""
        return cls(logit_standardization=config.logit_standardization)

    def kd_logits(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw logits, or both z-scored per sample when ``logit_standardization`` is on."""
        if self.logit_standardization:
            return standardize_logits(student_logits), standardize_logits(teacher_logits)
        return student_logits, teacher_logits

    def extra_repr(self) -> str:
        return f"logit_standardization={self.logit_standardization}"
