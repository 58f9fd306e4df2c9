"""A teacher that replays a cache: the ``ClassifierOutput`` of a training batch from its example indices and epoch.

The trainer calls it where it would call the teacher, with the batch's ``index`` and the 0-based epoch, so every loss
term is computed by the same code as online. It has no parameters; one epoch of the cache is held in memory at a time
(CIFAR-100: 20 MB in float32, 10 MB in float16).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from ..data.decoded import DecodedImageDataset
from ..models.outputs import ClassifierOutput
from .parts import EpochLogits, read_epoch
from .record import CacheRecord


class CachedTeacher(nn.Module):
    """The teacher's logits for (example index, epoch) from the cache in ``folder`` (a local folder), as recorded by
    ``record``. ``num_classes`` is the cache's class count (checked against the student and dataset like a teacher's).
    """

    def __init__(self, folder: str | Path, record: CacheRecord, source: str | None = None) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.record = record
        self.source = source or str(folder)
        self.num_classes = record.num_classes
        self._epoch: int | None = None
        self._table: EpochLogits | None = None

    def forward(self, pixel_values: torch.Tensor, return_features: bool = False, *, index: torch.Tensor,
                epoch: int) -> ClassifierOutput:
        """fp32 logits ``[B, C]`` of the examples ``index [B]`` in ``epoch`` (0-based), on ``pixel_values``' device.

        Raises ``ValueError`` when features are asked for (a cache holds logits only) or the epoch is not cached.
        """
        if return_features:
            raise ValueError("a teacher cache holds logits only, not the teacher's features")
        if not 0 <= epoch < self.record.epochs:
            raise ValueError(f"teacher cache {self.source} holds epochs 0 to {self.record.epochs - 1}, not {epoch}")
        if epoch != self._epoch:
            self._table, self._epoch = read_epoch(self.folder, self.record, epoch), epoch
        return ClassifierOutput(logits=self._table.rows(index).to(pixel_values.device))

    @staticmethod
    def indexed(dataset):
        """``dataset`` with the example ``index`` in every batch (a shallow copy; the views are unchanged)."""
        if isinstance(dataset, DecodedImageDataset) and not dataset.with_index:
            dataset = copy.copy(dataset)
            dataset.with_index = True
        return dataset

    def extra_repr(self) -> str:
        return f"source={self.source!r}, epochs={self.record.epochs}, topk={self.record.topk}"
