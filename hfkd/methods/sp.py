"""Similarity-Preserving KD: Tung & Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019
(spec section 2.4)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models.outputs import ClassifierOutput
from .base import DistillationMethod, Paper
from .components.feature_lists import last_map, require_maps
from .components.full_precision import full_precision
from .components.probing import probe_pair
from .components.sample_similarity import sample_similarity
from .registry import register_method


def similarity_matrix(feature: torch.Tensor) -> torch.Tensor:
    """Batch Gram matrix ``F F^T`` of the flattened map (``[B, B]``, fp32), each row L2-normalised."""
    gram = sample_similarity(feature)
    with full_precision(gram):
        return F.normalize(gram, dim=1)


def similarity_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``||G_t - G_s||_F^2 / B^2``; the maps may differ in channels and size, the Gram matrices do not."""
    batch = student.shape[0]
    return (similarity_matrix(teacher) - similarity_matrix(student)).pow(2).sum() / (batch * batch)


@register_method
class SP(DistillationMethod):
    """Match the batch similarity structure of the last stage maps ``feats[-2]``; no trainable modules."""

    name = "sp"
    paper = Paper(
        "Similarity-Preserving Knowledge Distillation",
        "Frederick Tung and Greg Mori",
        "IEEE/CVF International Conference on Computer Vision (ICCV)",
        2019,
        "https://arxiv.org/abs/1907.09682",
    )
    default_cls = 1.0
    default_div = 1.0
    default_beta = 3000.0
    needs_student_features = True
    needs_teacher_features = True

    @classmethod
    def build(
        cls,
        student: nn.Module,
        teacher: nn.Module,
        config: Any,
        example_batch: dict[str, torch.Tensor] | None,
        train_dataset: Any = None,
    ) -> "SP":
        """Check that both models' last stage maps are ``[C, H, W]`` maps; nothing is sized."""
        s_shapes, t_shapes = probe_pair(student, teacher, example_batch, cls.name)
        require_maps([last_map(s_shapes)], "student", cls.name, "the last stage map feats[-2]")
        require_maps([last_map(t_shapes)], "teacher", cls.name, "the last stage map feats[-2]")
        return cls()

    def forward(
        self, student_out: ClassifierOutput, teacher_out: ClassifierOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        return {"sp": similarity_loss(last_map(student_out.feats), last_map(teacher_out.feats))}
