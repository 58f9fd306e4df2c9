"""The module the Trainer optimises: the student plus the method's trainable parts, with the weighted loss.

``loss = cls * CE(student, y) + div * KD_T(student, teacher) + beta * sum(method terms)``. The teacher is not a
submodule: the trainer runs it (without autograd) and passes its outputs in, so it never reaches the optimizer,
the DDP wrapper or a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .methods import DistillationMethod, kd_divergence
from .models.outputs import ClassifierOutput


@dataclass(frozen=True)
class LossWeights:
    """The seed's names: ``cls`` (cross-entropy), ``div`` (KD term), ``beta`` (method loss)."""

    cls: float = 1.0
    div: float = 1.0
    beta: float = 0.0
    kd_temperature: float = 4.0


class DistillationModel(nn.Module):
    """Student + method modules; ``forward`` returns ``{"loss", "logits", "terms"}``.

    In training mode the loss is the weighted sum above and ``terms`` holds each unweighted term (detached) for
    logging; terms whose weight is 0 are not computed at all. In eval mode no teacher is needed: ``logits`` are the
    method's prediction (the student's own logits, or e.g. SimKD's reused teacher head) and ``loss`` is their CE.
    """

    # the Trainer must not pass num_items_in_batch: every term here is a per-batch mean
    accepts_loss_kwargs = False

    def __init__(self, student: nn.Module, method: DistillationMethod | None, weights: LossWeights) -> None:
        super().__init__()
        self.student = student
        self.method = method
        self.weights = weights

    @property
    def needs_teacher(self) -> bool:
        return self.method is not None

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        teacher_outputs: ClassifierOutput | None = None,
        **batch: torch.Tensor,
    ) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
        if not self.training:
            return self._evaluate(pixel_values, labels)

        method, w = self.method, self.weights
        if method is not None and teacher_outputs is None:
            raise ValueError(f"method {method.name!r} needs teacher outputs in training mode")
        student_out = self.student(pixel_values, return_features=method is not None and method.needs_student_features)

        terms: dict[str, torch.Tensor] = {}
        loss = student_out.logits.new_zeros((), dtype=torch.float32)
        if w.cls:
            ce_logits = method.ce_logits(student_out.logits) if method is not None else student_out.logits
            terms["ce"] = F.cross_entropy(ce_logits.float(), labels)
            loss = loss + w.cls * terms["ce"]
        if method is not None:
            if w.div:
                student_logits, teacher_logits = method.kd_logits(student_out.logits, teacher_outputs.logits)
                terms["kd"] = kd_divergence(student_logits, teacher_logits, w.kd_temperature)
                loss = loss + w.div * terms["kd"]
            if w.beta:
                batch = {"pixel_values": pixel_values, "labels": labels, **batch}
                for name, value in method(student_out, teacher_outputs, batch).items():
                    terms[name] = value
                    loss = loss + w.beta * value
        return {"loss": loss, "logits": student_out.logits, "terms": {k: v.detach() for k, v in terms.items()}}

    def _evaluate(self, pixel_values: torch.Tensor, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
        method = self.method
        needs_features = method is not None and method.predict_needs_features
        student_out = self.student(pixel_values, return_features=needs_features)
        logits = method.predict(student_out) if method is not None else student_out.logits
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = F.cross_entropy(logits.float(), labels)
        return out
