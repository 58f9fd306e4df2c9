"""The epoch a dataset's keyed draws belong to, shared with its DataLoader worker processes.

Crops, flips and CRD's negatives are drawn from (seed, epoch, index) (``keyed_random``), so every process that
draws must know the epoch. The trainer sets it on the dataset in the main process at each epoch's start; a worker
holds its own copy of the dataset, made when it started, and with ``dataloader_persistent_workers`` it starts once,
so a plain attribute would stay at the first epoch there. The value lives in shared memory instead: a worker started
by fork inherits the mapping, one started by spawn receives it through torch's multiprocessing pickler, and both read
what the main process last set. The trainer sets it before the epoch's DataLoader iterator starts, so no batch of an
epoch is drawn with the previous epoch's value.
"""

from __future__ import annotations

import torch


class SharedEpoch:
    """An integer in shared memory: ``set`` in the main process, ``get`` in any DataLoader worker."""

    def __init__(self, value: int = 0) -> None:
        self._value = torch.zeros((), dtype=torch.int64).share_memory_()
        self.set(value)

    def get(self) -> int:
        return int(self._value)

    def set(self, value: int) -> None:
        self._value.fill_(int(value))


class SharedEpochMixin:
    """``epoch`` and ``set_epoch(epoch)`` for a dataset whose keyed draws read the epoch: the value lives in a
    ``SharedEpoch`` at ``self._epoch``, which the dataset's ``__init__`` creates (``SharedEpoch(0)``)."""

    _epoch: SharedEpoch

    @property
    def epoch(self) -> int:
        """The 0-based epoch the next batches belong to, as the main process last set it."""
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch (main process, before the epoch's DataLoader iterator starts); workers read it."""
        self._epoch.set(epoch)
