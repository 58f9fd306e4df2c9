"""Relational Knowledge Distillation (RKD): match pairwise distances and triplet angles within the batch.

Park, Kim, Lu and Cho, "Relational Knowledge Distillation", CVPR 2019, as in RepDistiller (spec 3), on the flattened
pooled vectors:

- distance term: Euclidean distances from squared distances clamped at 1e-12, diagonal set to 0, each matrix divided
  by the mean of its positive entries, then smooth-L1 between student and teacher (teacher side without autograd);
- angle term: for all i, j, k the inner product of ``normalize(x_j - x_i)`` and ``normalize(x_k - x_i)``, smooth-L1
  over the flattened ``B^3`` tensors;
- ``L = 25 * distance + 50 * angle``. No trainable modules.

Differences from the reference: squared distances are summed from the differences (the reference expands
``|a|^2 + |b|^2 - 2ab``; same value, without its cancellation); the mean of the positive entries is sum / count,
without boolean indexing (no host sync); a batch of one example (no positive entry) gives 0 instead of NaN.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..models.outputs import ClassifierOutput
from .base import DistillationMethod, Paper
from .components.feature_lists import pooled_fp32
from .components.full_precision import full_precision
from .registry import register_method

RKD_DISTANCE_WEIGHT = 25.0
RKD_ANGLE_WEIGHT = 50.0
SQUARED_DISTANCE_FLOOR = 1e-12


def _differences(x: torch.Tensor) -> torch.Tensor:
    """``[B, B, D]`` with entry ``[i, j] = x_j - x_i``."""
    return x[None, :, :] - x[:, None, :]


def normalized_distances(x: torch.Tensor) -> torch.Tensor:
    """Pairwise distances ``[B, B]`` (squared ones clamped at 1e-12, diagonal 0) over the mean positive distance.

    Squared distances are summed from the differences rather than ``|a|^2 + |b|^2 - 2ab``: no cancellation, so
    close pairs keep their precision whatever the matmul precision (TF32) is set to.
    """
    squared = _differences(x).pow(2).sum(dim=2).clamp(min=SQUARED_DISTANCE_FLOOR)
    eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    distance = squared.sqrt().masked_fill(eye, 0.0)
    positive = distance > 0
    mean = (distance * positive).sum() / positive.sum().clamp(min=1)
    # positive distances are >= 1e-6, so the floor only matters when there is none (a batch of one)
    return distance / mean.clamp(min=SQUARED_DISTANCE_FLOOR)


def triplet_angles(x: torch.Tensor) -> torch.Tensor:
    """``<normalize(x_j - x_i), normalize(x_k - x_i)>`` for all i, j, k, flattened to ``[B^3]``."""
    unit = F.normalize(_differences(x), p=2, dim=2)
    return torch.bmm(unit, unit.transpose(1, 2)).flatten()


def rkd_loss(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """``25 * smooth_l1(distances) + 50 * smooth_l1(angles)`` between student and teacher rows (spec 3)."""
    f_s, f_t = f_s.float().flatten(1), f_t.float().flatten(1)
    with full_precision(f_s):
        with torch.no_grad():
            t_distance, t_angle = normalized_distances(f_t), triplet_angles(f_t)
        distance = F.smooth_l1_loss(normalized_distances(f_s), t_distance)
        angle = F.smooth_l1_loss(triplet_angles(f_s), t_angle)
    return RKD_DISTANCE_WEIGHT * distance + RKD_ANGLE_WEIGHT * angle


@register_method
class RKD(DistillationMethod):
    """Distance-wise and angle-wise relations of the pooled vectors, teacher against student."""

    name = "rkd"
    paper = Paper(
        "Relational Knowledge Distillation",
        "Wonpyo Park and Dongju Kim and Yan Lu and Minsu Cho",
        "IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)",
        2019,
        "https://arxiv.org/abs/1904.05068",
    )
    default_beta = 1.0
    needs_student_features = True
    needs_teacher_features = True

    def forward(
        self, student_out: ClassifierOutput, teacher_out: ClassifierOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        return {"rkd": rkd_loss(pooled_fp32(student_out), pooled_fp32(teacher_out))}
