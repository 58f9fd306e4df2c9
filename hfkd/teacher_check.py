"""Checking the teacher on evaluation data before distillation starts.

A teacher loaded with the wrong checkpoint, normalisation or label order still trains a student, silently badly. At
train begin the teacher's top-1 is measured on up to ``TEACHER_CHECK_EXAMPLES`` evaluation examples, through the
trainer's own evaluation input path (data loader, device placement, on-device transform, memory format), and a
warning is logged when it is near chance. The measured top-1 is kept for the model card.
"""

from __future__ import annotations

import logging

import torch
from transformers import TrainerCallback

from .teacher_cache.cached_teacher import CachedTeacher

logger = logging.getLogger(__name__)

# the teacher is checked on at most this many evaluation examples, spread evenly over the set
TEACHER_CHECK_EXAMPLES = 2048


def measure_teacher_top1(trainer) -> float | None:
    """The teacher's top-1 (%) on up to TEACHER_CHECK_EXAMPLES evaluation examples of ``trainer`` (a
    ``DistillationTrainer``), with a warning below twice the chance level; None without a teacher or eval set."""
    if trainer.teacher is None or trainer.eval_dataset is None:
        return None
    if isinstance(trainer.teacher, CachedTeacher):  # measured when the cache was built
        return trainer.teacher.record.teacher_top1
    size = len(trainer.eval_dataset)
    stride = max(1, size // TEACHER_CHECK_EXAMPLES)
    subset = torch.utils.data.Subset(trainer.eval_dataset, list(range(0, size, stride))[:TEACHER_CHECK_EXAMPLES])
    correct, total = [], 0
    with torch.no_grad():
        for batch in trainer.get_eval_dataloader(subset):
            batch = trainer.model_inputs(batch, trainer.eval_dataset)
            hits = (trainer.teacher(batch["pixel_values"]).logits.argmax(-1) == batch["labels"]).to(torch.int64)
            hits = trainer.accelerator.gather_for_metrics(hits)  # each example counted once over the processes
            correct.append(hits.sum())
            total += hits.numel()
    top1 = 100.0 * int(torch.stack(correct).sum()) / max(total, 1)
    num_classes = getattr(trainer.teacher, "num_classes", None) or 1
    chance = 100.0 / num_classes
    if top1 < 2 * chance:
        logger.warning(
            "the teacher reaches %.1f %% top-1 on %d evaluation examples, near chance (%.1f %% for %d classes): "
            "check its checkpoint, its input normalisation and its label order before distilling from it",
            top1, total, chance, num_classes,
        )
    return top1


class TeacherCheck(TrainerCallback):
    """Measures the teacher (``measure_teacher_top1``) at train begin; the result is in ``top1``."""

    def __init__(self, trainer) -> None:
        self.trainer = trainer
        self.top1: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.top1 = measure_teacher_top1(self.trainer)
