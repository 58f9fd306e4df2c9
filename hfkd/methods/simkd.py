"""SimKD: Chen et al., "Knowledge Distillation with the Reused Teacher Classifier", CVPR 2022 (spec 2.9).

The student's last map ``feats[-2]`` is aligned with the teacher's (the larger one is average-pooled), projected by a
bottleneck ``transfer`` onto the teacher's channels and trained with ``MSE(projected, teacher map)``; the prediction
-- in training, evaluation and the exported model -- is the teacher's classifier on the pooled projection.

Differences from the reference, on purpose:
- evaluation and the export never run the teacher: its map size is stored when the method is built (spec 8.1);
- the reused head is ``teacher.classifier``, checked to be the Linear that maps the pooled feature to the logits,
  not ``get_feat_modules()[-1]`` (spec 8.3); a teacher whose last map has fewer/more channels than its classifier
  takes (MobileNetV2, ShuffleV2: an extra 1x1 conv sits between them) is rejected at set-up;
- the exported student carries projector + teacher head (``SimKDHead``), so it predicts correctly on its own (8.2).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import IncompatibleSetupError
from ..models.outputs import ClassifierOutput
from ..models.simkd_head import SimKDHead
from ..models.spatial import align_spatial
from .base import DistillationMethod, Paper
from .components.feature_lists import last_map, require_maps
from .components.probing import example_pixels, probe, probe_features
from .components.teacher_head import frozen_teacher_linear
from .registry import register_method

logger = logging.getLogger(__name__)


@register_method
class SimKD(DistillationMethod):
    """Projector + reused (frozen) teacher classifier; the loss is the feature MSE, the prediction the teacher head."""

    name = "simkd"
    paper = Paper(
        "Knowledge Distillation with the Reused Teacher Classifier",
        "Defang Chen and Jian-Ping Mei and Hailin Zhang and Can Wang and Yan Feng and Chun Chen",
        "IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)",
        2022,
        "https://arxiv.org/abs/2203.14001",
    )
    # SimKD's scripts: -c 0 -d 0 -b 1 (the feature MSE is the only training signal)
    default_cls = 0.0
    default_div = 0.0
    default_beta = 1.0
    needs_student_features = True
    needs_teacher_features = True
    predict_needs_features = True

    def __init__(self, head: SimKDHead) -> None:
        super().__init__()
        self.head = head

    @classmethod
    def build(
        cls,
        student: nn.Module,
        teacher: nn.Module,
        config: Any,
        example_batch: dict[str, torch.Tensor] | None,
        train_dataset: Any = None,
    ) -> "SimKD":
        """Size the projector from ``feats[-2]`` of both models and copy the teacher's classifier (frozen).

        Raises ``IncompatibleSetupError`` for a pair whose maps or head do not fit, and under ``torch_compile``: with
        torch 2.14 the compiled SimKD loss carries no gradient (the projector would not train; found with
        ``torch.compile`` of the DistillationModel on the CPU, cause not found), while KD, FitNet, DKD and SRRL train
        compiled.
        """
        if getattr(config, "torch_compile", False):
            raise IncompatibleSetupError(
                "simkd does not train under torch_compile with this torch (the compiled loss has no gradient, so the "
                "projector would not learn); set torch_compile: false"
            )
        pixels = example_pixels(student, example_batch, cls.name)
        student_map = last_map(probe_features(student, pixels))
        teacher_out = probe(teacher, pixels)
        teacher_map = last_map(teacher_out.feats).shape[1:]
        require_maps([student_map], "student", cls.name, "the last stage output feats[-2]")
        require_maps([teacher_map], "teacher", cls.name, "the last stage output feats[-2]")
        linear = frozen_teacher_linear(teacher, teacher_out, cls.name)
        teacher_channels = teacher_map[0]
        if teacher_channels != linear.in_features:
            raise IncompatibleSetupError(
                f"simkd feeds the pooled projection of the teacher's last map feats[-2] ({teacher_channels} channels) "
                f"to the teacher's classifier, which takes {linear.in_features} features, so the two must agree; "
                f"use a teacher whose classifier reads the pooled last map (ResNet, WRN, VGG, ShuffleV1), not one with "
                f"an extra layer before the head (MobileNetV2, ShuffleV2)"
            )
        factor = int(config.simkd_factor)
        if factor < 1 or teacher_channels // factor < 1:
            raise IncompatibleSetupError(
                f"simkd_factor {factor} must be between 1 and the teacher's {teacher_channels} channels of feats[-2]"
            )
        pooled_map = last_map(teacher_out.feats).float().mean(dim=(2, 3))
        if not torch.allclose(pooled_map, teacher_out.feats[-1].float(), rtol=1e-3, atol=1e-4):
            logger.warning(
                "simkd: the teacher's pooled feature is not the global average of its last map feats[-2], so its "
                "classifier is reused on a feature it was not trained on"
            )
        head = SimKDHead(
            student_channels=student_map[0],
            teacher_channels=teacher_channels,
            num_classes=linear.out_features,
            factor=factor,
            target_size=tuple(teacher_map[1:]),
        )
        head.classifier.load_state_dict(linear.state_dict())
        head.classifier.requires_grad_(False)
        return cls(head)

    def forward(
        self, student_out: ClassifierOutput, teacher_out: ClassifierOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """``MSE(transfer(source), target)`` over ``B * C_t * h * w``, in fp32 (spec 2.9)."""
        source, target = align_spatial(last_map(student_out.feats), last_map(teacher_out.feats))
        projected = self.head.project(source)
        return {"simkd": F.mse_loss(projected.float(), target.float())}

    def predict(self, student_out: ClassifierOutput) -> torch.Tensor:
        """The teacher's classifier on the pooled projection of the student's last map; no teacher run."""
        return self.head(last_map(student_out.feats))

    def export_head(self) -> tuple[dict, nn.Module]:
        """The projector + teacher head, exported with the student (``HfkdConfig.prediction_head``)."""
        return self.head.head_config(), self.head
