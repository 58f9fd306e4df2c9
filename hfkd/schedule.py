"""The references' step learning-rate schedule, tied to epochs (spec section 4.1)."""

from __future__ import annotations

from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def milestone_factor(epoch: int, milestones: Sequence[int], rate: float) -> float:
    """lr factor in 1-based ``epoch``: ``rate ** #{m : epoch > m}`` (so epochs 1..150 keep the initial lr)."""
    return rate ** sum(epoch > m for m in milestones)


class EpochMilestoneLR(LambdaLR):
    """Steps once per optimizer update; the lr is constant within an epoch and drops after each milestone.

    ``steps_per_epoch`` is the number of optimizer updates in one epoch on this process, so milestones stay
    tied to epochs whatever the process count or gradient accumulation.
    """

    def __init__(self, optimizer: Optimizer, steps_per_epoch: int, milestones: Sequence[int], rate: float) -> None:
        if steps_per_epoch < 1:
            raise ValueError("steps_per_epoch must be >= 1")
        self.steps_per_epoch = steps_per_epoch
        self.milestones = list(milestones)
        self.rate = rate
        super().__init__(optimizer, self._factor)

    def _factor(self, step: int) -> float:
        return milestone_factor(step // self.steps_per_epoch + 1, self.milestones, self.rate)
