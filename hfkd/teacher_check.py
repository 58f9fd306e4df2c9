"""Checking the teacher on evaluation data before distillation starts.

A teacher loaded with the wrong checkpoint, normalisation or label order still trains a student, silently badly. At
train begin the teacher's top-1 is measured on up to ``TEACHER_CHECK_EXAMPLES`` evaluation examples, through the
trainer's own evaluation input path (data loader, device placement, on-device transform, memory format), and a
warning is logged when it is near chance. The measured top-1 is kept for the model card.

"Near chance" is measured on the scale from chance (100 / C % for C classes) to perfect (100 %): a teacher below
``NEAR_CHANCE_FRACTION`` of the way up is flagged. The rule is the same for any class count (two times chance, the
earlier rule, is 100 % for two classes, so every binary teacher was flagged, and 2 % for 100 classes).
"""

from __future__ import annotations

import logging

import torch
from transformers import TrainerCallback

from .teacher_cache.cached_teacher import CachedTeacher

logger = logging.getLogger(__name__)

# the teacher is checked on at most this many evaluation examples, spread evenly over the set
TEACHER_CHECK_EXAMPLES = 2048
# a teacher whose top-1 lies less than this fraction of the way from chance to 100 % is "near chance"
NEAR_CHANCE_FRACTION = 0.1


def near_chance_threshold(num_classes: int) -> float:
    """The top-1 (%) below which a teacher of ``num_classes`` classes is near chance: chance plus
    ``NEAR_CHANCE_FRACTION`` of the distance from chance to 100 % (2 classes: 55 %; 10: 19 %; 100: 10.9 %)."""
    chance = 100.0 / max(num_classes, 1)
    return chance + NEAR_CHANCE_FRACTION * (100.0 - chance)


def measure_teacher_top1(trainer) -> float | None:
    """The teacher's top-1 (%) on up to TEACHER_CHECK_EXAMPLES evaluation examples of ``trainer`` (a
    ``DistillationTrainer``), with a warning below ``near_chance_threshold``; None without a teacher or eval set.
    The class count is the dataset's (``trainer.class_names``), else the teacher's."""
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
    names = getattr(trainer, "class_names", None)
    num_classes = len(names) if names else getattr(trainer.teacher, "num_classes", None)
    if not num_classes:
        return top1
    chance = 100.0 / num_classes
    threshold = near_chance_threshold(num_classes)
    if top1 < threshold:
        logger.warning(
            "the teacher reaches %.1f %% top-1 on %d evaluation examples, near chance (%.1f %% for %d classes; "
            "below %.1f %%, a tenth of the way from chance to 100 %%): check its checkpoint, its input "
            "normalisation and its label order before distilling from it",
            top1, total, chance, num_classes, threshold,
        )
    return top1


class TeacherCheck(TrainerCallback):
    """Measures the teacher (``measure_teacher_top1``) at train begin; the result is in ``top1``."""

    def __init__(self, trainer) -> None:
        self.trainer = trainer
        self.top1: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.top1 = measure_teacher_top1(self.trainer)
