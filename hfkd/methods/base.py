"""The interface every distillation method implements (DESIGN.md, "Methods")."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ..models.outputs import ClassifierOutput


class DistillationMethod(nn.Module):
    """A method's own, unweighted loss terms computed from student and teacher outputs.

    The trainer adds ``cls * CE + div * KD_T`` itself; a method returns only what it adds on top (weighted by
    ``beta``). Trainable parts (projectors, embeddings) are submodules, so they are optimised and checkpointed with
    the student; the teacher is never a submodule.
    """

    name: ClassVar[str] = ""
    # weight of the method's loss when the recipe leaves ``beta`` unset (SimKD's run_distill.sh, spec section 2)
    default_beta: ClassVar[float] = 0.0
    # which feature lists the method reads; the trainer only collects features when asked to
    needs_student_features: ClassVar[bool] = False
    needs_teacher_features: ClassVar[bool] = False

    @classmethod
    def build(cls, student: nn.Module, teacher: nn.Module, config: Any, example_batch: dict[str, torch.Tensor]):
        """Create the method for this student/teacher pair; methods that size modules override this."""
        return cls()

    def forward(
        self, student_out: ClassifierOutput, teacher_out: ClassifierOutput, batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        return {}

    def predict(self, student_out: ClassifierOutput) -> torch.Tensor:
        """Logits used for evaluation and export; the student's own unless the method predicts differently."""
        return student_out.logits

    # which student outputs `predict` reads at evaluation time
    predict_needs_features: ClassVar[bool] = False
