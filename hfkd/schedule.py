"""The references' step learning-rate schedule, tied to epochs (spec section 4.1).

``EpochMilestoneLR`` steps once per optimizer update like every transformers scheduler, but its factor depends on
the epoch: it needs the number of optimizer updates per epoch on this process, which the Trainer knows only once
its training data loader exists. ``EpochLength`` (a callback) hands that number over at train begin, before the
first update.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR
from transformers import TrainerCallback
from transformers.trainer_utils import has_length

from .errors import RecipeError


def milestone_epochs(lr_decay_epochs: Sequence[float], num_train_epochs: float) -> list[float]:
    """The milestones in epochs: as given, or, when all are below 1, those fractions of ``num_train_epochs``."""
    milestones = [float(m) for m in lr_decay_epochs]
    if milestones and max(milestones) < 1:
        milestones = [m * float(num_train_epochs) for m in milestones]
    return [int(m) if m.is_integer() else m for m in milestones]


def milestone_factor(epoch: int, milestones: Sequence[float], rate: float) -> float:
    """lr factor in 1-based ``epoch``: ``rate ** #{m : epoch > m}`` (so epochs 1..150 keep the initial lr)."""
    return rate ** sum(epoch > m for m in milestones)


class EpochMilestoneLR(LambdaLR):
    """Steps once per optimizer update; the lr is constant within an epoch and drops after each milestone.

    ``steps_per_epoch`` is the number of optimizer updates in one epoch on this process, so milestones stay tied to
    epochs whatever the process count or gradient accumulation. It may be given later (``set_steps_per_epoch``),
    before the first update.
    """

    def __init__(
        self, optimizer: Optimizer, milestones: Sequence[int], rate: float, steps_per_epoch: int | None = None
    ) -> None:
        self.steps_per_epoch: int | None = None
        if steps_per_epoch is not None:
            self.set_steps_per_epoch(steps_per_epoch)
        self.milestones = list(milestones)
        self.rate = rate
        super().__init__(optimizer, self._factor)

    def set_steps_per_epoch(self, steps_per_epoch: int) -> None:
        if steps_per_epoch < 1:
            raise ValueError("steps_per_epoch must be >= 1")
        self.steps_per_epoch = int(steps_per_epoch)

    def _factor(self, step: int) -> float:
        if self.steps_per_epoch is None:
            if step == 0:  # the initial lr, set when the scheduler is built: epoch 1
                return milestone_factor(1, self.milestones, self.rate)
            raise RuntimeError("EpochMilestoneLR stepped before its steps_per_epoch was set")
        return milestone_factor(step // self.steps_per_epoch + 1, self.milestones, self.rate)


class EpochLength(TrainerCallback):
    """At train begin, gives an ``EpochMilestoneLR`` the optimizer updates per epoch of the training data loader
    (``ceil(batches / gradient_accumulation_steps)``, the Trainer's own count)."""

    def on_train_begin(self, args, state, control, lr_scheduler=None, train_dataloader=None, **kwargs):
        scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)  # through accelerate's wrapper, if any
        if not isinstance(scheduler, EpochMilestoneLR):
            return
        if train_dataloader is None or not has_length(train_dataloader):
            raise RecipeError("lr_decay_epochs needs a training set with a known length; use lr_scheduler_type")
        scheduler.set_steps_per_epoch(max(math.ceil(len(train_dataloader) / args.gradient_accumulation_steps), 1))
