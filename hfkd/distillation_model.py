"""The module the Trainer optimises: the student plus the method's trainable parts, with the weighted loss.

``loss = cls * CE(student, y) + div * KD_T(student, teacher) + beta * sum(method terms)``. The teacher is not a
submodule: the trainer runs it (without autograd) and passes its outputs in, so it never reaches the optimizer,
the DDP wrapper or a checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import RecipeError
from .methods import METHODS, NO_DISTILLATION, DistillationMethod, build_method, kd_divergence
from .models.outputs import ClassifierOutput

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LossWeights:
    """The seed's names: ``cls`` (cross-entropy), ``div`` (KD term), ``beta`` (method loss); ``kd_temperature`` is the
    KD term's T, ``label_smoothing`` the epsilon of the ``cls`` term's targets (transformers' ``label_smoothing_factor``:
    ``(1 - eps) * CE + eps * mean over classes of -log p``; the ``div`` and ``beta`` terms are not affected)."""

    cls: float = 1.0
    div: float = 1.0
    beta: float = 0.0
    kd_temperature: float = 4.0
    label_smoothing: float = 0.0


def resolve_loss_weights(args) -> LossWeights:
    """The run's loss weights, resolved once: ``cls`` / ``div`` / ``beta`` from ``args`` (a ``DistillationConfig``)
    where set, else the method's published defaults (its ``default_weights(args)``; ``none``: 1, 0, 0).

    Raises ``RecipeError`` when every term that would be computed has weight 0. ``args`` is not changed.
    """
    method = METHODS.get(args.method) if args.method != NO_DISTILLATION else None
    defaults = method.default_weights(args) if method is not None else (1.0, 0.0, 0.0)
    cls, div, beta = (float(value if value is not None else default)
                      for value, default in zip((args.cls, args.div, args.beta), defaults))
    if not (cls > 0 or (method is not None and (div > 0 or beta > 0))):
        raise RecipeError("cls, div and beta give every loss term a weight of 0, so nothing would be trained")
    return LossWeights(cls=cls, div=div, beta=beta, kd_temperature=args.kd_temperature,
                       label_smoothing=args.label_smoothing_factor)


def head_logits(out: ClassifierOutput, head: str | None) -> torch.Tensor:
    """The logits of the model's head named ``head`` (a method's ``ce_head`` / ``kd_head``), or its logits for None."""
    return out.logits if head is None else out.head_logits[head]


class DistillationModel(nn.Module):
    """Student + method modules; ``forward`` returns ``{"loss", "logits", "terms"}``.

    In training mode the loss is the weighted sum above and ``terms`` holds each unweighted term (detached) for
    logging; terms whose weight is 0 are not computed at all. ``CE`` and ``KD_T`` read the student's logits, or the
    head the method names (``ce_head`` / ``kd_head``: DeiT trains its class and distillation heads apart). In eval
    mode no teacher is needed: ``logits`` are the method's prediction (the student's own logits, or e.g. SimKD's
    reused teacher head) and ``loss`` is their CE.

    ``labels`` are class indices ``[B]`` (int64), or in training the mixed targets ``[B, C]`` (float, rows summing to
    1) of Mixup / CutMix, which ``F.cross_entropy`` takes as class probabilities (label smoothing included).
    """

    # the Trainer must not pass num_items_in_batch: every term here is a per-batch mean
    accepts_loss_kwargs = False
    # the Trainer reads ``model.config`` when label_smoothing_factor is set (to rule out multi-label problems); this
    # model has no transformers config, and applies label smoothing itself, to the cls term (LossWeights)
    config = None

    def __init__(self, student: nn.Module, method: DistillationMethod | None, weights: LossWeights) -> None:
        super().__init__()
        self.student = student
        self.method = method
        self.weights = weights
        # the input side the student trains at (the export's config records it); set from a training batch by build
        self.image_size = 32

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
        if method is not None:
            w = method.weights_at(batch.get("epoch"), w)
        if method is not None and teacher_outputs is None:
            raise ValueError(f"method {method.name!r} needs teacher outputs in training mode")
        student_out = self.student(pixel_values, return_features=method is not None and method.needs_student_features)

        terms: dict[str, torch.Tensor] = {}
        loss = student_out.logits.new_zeros((), dtype=torch.float32)
        if w.cls:
            ce_logits = student_out.logits if method is None else method.ce_logits(
                head_logits(student_out, method.ce_head))
            terms["ce"] = F.cross_entropy(ce_logits.float(), labels, label_smoothing=w.label_smoothing)
            loss = loss + w.cls * terms["ce"]
        if method is not None:
            if w.div:
                student_logits, teacher_logits = method.kd_logits(head_logits(student_out, method.kd_head),
                                                                  teacher_outputs.logits)
                terms["kd"] = kd_divergence(student_logits, teacher_logits, w.kd_temperature)
                loss = loss + w.div * terms["kd"]
            if w.beta:
                batch = {"pixel_values": pixel_values, "labels": labels, **batch}
                for name, value in method(student_out, teacher_outputs, batch).items():
                    terms[name] = value
                    loss = loss + w.beta * value
        return {"loss": loss, "logits": student_out.logits, "terms": {k: v.detach() for k, v in terms.items()}}

    @classmethod
    def build(
        cls,
        student: nn.Module,
        teacher: nn.Module | None,
        args,
        weights: LossWeights,
        example_batch: dict[str, Any] | None,
        train_dataset=None,
    ) -> "DistillationModel":
        """The student with the method named by ``args.method``, its modules sized on ``example_batch`` (a collated
        training batch) and the training set (``train_dataset``, already prepared by the method)."""
        if args.method == NO_DISTILLATION and teacher is not None:
            logger.warning("method 'none' trains the model alone; the teacher is not used")
            teacher = None
        method = build_method(args.method, student, teacher, args, example_batch, train_dataset=train_dataset)
        model = cls(student, method, weights)
        if example_batch is not None:
            model.image_size = int(example_batch["pixel_values"].shape[-1])
        return model

    def _evaluate(self, pixel_values: torch.Tensor, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
        method = self.method
        needs_features = method is not None and method.predict_needs_features
        student_out = self.student(pixel_values, return_features=needs_features)
        logits = method.predict(student_out) if method is not None else student_out.logits
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = F.cross_entropy(logits.float(), labels)
        return out
