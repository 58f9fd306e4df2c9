"""What the stage-map methods share (AT, NST, VID): pairing ``feats[1:-1]`` of student and teacher.

Stage maps are paired by position with ``zip`` (spec 1.2), so ``min(len_s, len_t)`` pairs are used, and each
pair is spatially aligned by ``hfkd.models.spatial.align_spatial``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ...errors import IncompatibleSetupError
from ...models.outputs import ClassifierOutput
from ...models.spatial import align_spatial
from ..base import DistillationMethod
from .feature_lists import require_maps, stage_maps
from .probing import probe_pair


def stage_map_shape_pairs(
    student: nn.Module, teacher: nn.Module, example_batch: dict[str, Any] | None, method: str
) -> list[tuple[torch.Size, torch.Size]]:
    """The zipped (student, teacher) stage-map shapes ``feats[1:-1]``, checked to be 4-D maps.

    Raises ``IncompatibleSetupError`` when a paired feature is not a ``[C, H, W]`` map or there is no pair at all.
    """
    s_shapes, t_shapes = probe_pair(student, teacher, example_batch, method)
    pairs = list(zip(stage_maps(s_shapes), stage_maps(t_shapes)))
    if not pairs:
        raise IncompatibleSetupError(
            f"{method} pairs the stage maps feats[1:-1] of student and teacher, but the student has "
            f"{max(len(s_shapes) - 2, 0)} and the teacher {max(len(t_shapes) - 2, 0)}; use models with at least one "
            f"stage map between the stem and the pooled vector"
        )
    require_maps([s for s, _ in pairs], "student", method, "the stage maps feats[1:-1]")
    require_maps([t for _, t in pairs], "teacher", method, "the stage maps feats[1:-1]")
    return pairs


def aligned_stage_pairs(
    student_feats: Sequence[torch.Tensor], teacher_feats: Sequence[torch.Tensor]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Zip the stage maps ``feats[1:-1]`` by position and pool the larger map of each pair to the smaller's size.

    A map that is pooled is upcast to fp32 first, so its pooled values are exact; the others keep their dtype and
    memory layout, and each loss computes in fp32 from what it reads. Upcasting every map here instead would copy
    each bf16 map to a full fp32 map (and its gradient back) under autocast, although the losses only need fp32
    accumulation.
    """
    pairs = []
    for s, t in zip(stage_maps(student_feats), stage_maps(teacher_feats)):
        if s.shape[-2:] != t.shape[-2:]:
            s, t = s.float(), t.float()
        pairs.append(align_spatial(s, t))
    return pairs


class StageMapPairMethod(DistillationMethod):
    """A parameter-free method whose loss is ``sum over aligned stage-map pairs of pair_loss(s, t)`` (AT, NST).

    Subclasses set ``name`` and the default weights and implement ``pair_loss``; the loss term is named after the
    method.
    """

    needs_student_features = True
    needs_teacher_features = True

    @staticmethod
    def pair_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def build(
        cls,
        student: nn.Module,
        teacher: nn.Module,
        config: Any,
        example_batch: dict[str, torch.Tensor] | None,
        train_dataset: Any = None,
    ) -> "StageMapPairMethod":
        """Check that both models give stage maps to pair; nothing is sized."""
        stage_map_shape_pairs(student, teacher, example_batch, cls.name)
        return cls()

    def forward(
        self, student_out: ClassifierOutput, teacher_out: ClassifierOutput, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        pairs = aligned_stage_pairs(student_out.feats, teacher_out.feats)
        return {self.name: torch.stack([self.pair_loss(s, t) for s, t in pairs]).sum()}
