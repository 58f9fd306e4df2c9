"""The collator: batches from ``__getitems__`` arrive already stacked; lists of examples are stacked here."""

from __future__ import annotations

from typing import Any

import torch


def collate_image_batch(items: dict[str, torch.Tensor] | list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    if isinstance(items, dict):
        return items
    batch = {}
    for key in items[0]:
        values = [item[key] for item in items]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else torch.as_tensor(values)
    return batch


def example_batch(dataset, collator=collate_image_batch, size: int = 2) -> dict[str, torch.Tensor]:
    """A small collated training batch, transformed as training transforms it (also on the device path), that
    methods size their modules on (spec 1.4 step 2): the first ``size`` examples of ``dataset``."""
    if hasattr(dataset, "first_batch"):  # a streamed dataset: no indices
        return dataset.first_batch(size)
    indices = list(range(min(size, len(dataset))))
    items = dataset.__getitems__(indices) if hasattr(dataset, "__getitems__") else [dataset[i] for i in indices]
    batch = collator(items)
    return dataset.device_transform(batch) if hasattr(dataset, "device_transform") else batch
