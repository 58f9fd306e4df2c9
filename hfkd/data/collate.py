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
