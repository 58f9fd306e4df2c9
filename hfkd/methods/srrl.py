"""SRRL: Yang et al., "Knowledge Distillation via Softmax Regression Representation Learning", ICLR 2021 (spec 2.8).

The student's pooled feature is mapped onto the teacher's by ``transfer`` (1x1 conv + BN + ReLU on ``[B, C_s, 1, 1]``)
and trained to match the teacher's pooled feature and, through the teacher's frozen classifier, the teacher's logits.
At test time the student's own classifier predicts. The reused head is ``teacher.classifier`` (checked to be the
Linear on the pooled feature), not the reference's ``get_feat_modules()[-1]``, which is wrong for MobileNetV2 and
ShuffleNet teachers (spec 8.3).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models.outputs import ClassifierOutput
from .base import DistillationMethod, Paper
from .components.feature_lists import pooled
from .components.probing import example_pixels, probe, probe_features
from .components.teacher_head import frozen_teacher_linear
from .registry import register_method


@register_method
class SRRL(DistillationMethod):
    """``MSE(h_s, f_t) + MSE(cls_t(h_s), z_t)`` with ``h_s = transfer(f_s)`` on the pooled features."""

    name = "srrl"
    paper = Paper(
        "Knowledge Distillation via Softmax Regression Representation Learning",
        "Jing Yang and Brais Martinez and Adrian Bulat and Georgios Tzimiropoulos",
        "International Conference on Learning Representations (ICLR)",
        2021,
        "https://openreview.net/forum?id=ZzwDy_wiWv",
    )
    default_cls = 1.0
    default_div = 1.0
    default_beta = 1.0
    needs_student_features = True
    needs_teacher_features = True

    def __init__(self, student_features: int, teacher_features: int, teacher_classifier: nn.Linear) -> None:
        super().__init__()
        # keys transfer.0.weight, transfer.1.{weight,bias,running_mean,running_var,num_batches_tracked} (spec 2.8);
        # the reshape to [B, C_s, 1, 1] and the flatten happen in forward, so they take no index
        self.transfer = nn.Sequential(
            nn.Conv2d(student_features, teacher_features, kernel_size=1, bias=False),
            nn.BatchNorm2d(teacher_features),
            nn.ReLU(inplace=True),
        )
        self.teacher_classifier = teacher_classifier

    @classmethod
    def build(
        cls,
        student: nn.Module,
        teacher: nn.Module,
        config: Any,
        example_batch: dict[str, torch.Tensor] | None,
        train_dataset: Any = None,
    ) -> "SRRL":
        """Size ``transfer`` from the pooled widths and take a frozen copy of the teacher's classifier."""
        pixels = example_pixels(student, example_batch, cls.name)
        student_features = pooled(probe_features(student, pixels))[0]
        teacher_out = probe(teacher, pixels)
        linear = frozen_teacher_linear(teacher, teacher_out, cls.name)
        return cls(student_features, teacher_out.feats[-1].shape[1], linear)

    def forward(
        self, student_out: ClassifierOutput, teacher_out: ClassifierOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """Both MSEs averaged over elements, in fp32; their sum is the reference's ``L_method``."""
        f_s = pooled(student_out.feats)
        h_s = self.transfer(f_s[:, :, None, None]).flatten(1)
        predicted = self.teacher_classifier(h_s)
        return {
            "srrl_feature": F.mse_loss(h_s.float(), pooled(teacher_out.feats).float()),
            "srrl_logit": F.mse_loss(predicted.float(), teacher_out.logits.float()),
        }
