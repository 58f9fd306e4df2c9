"""Large images, decoded and transformed one at a time in DataLoader workers, with keyed random draws."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import datasets
import torch

from .augmentation import augment_image
from .images import decode_rgb
from .keyed_random import keyed_hash
from .shared_epoch import SharedEpoch, SharedEpochMixin


class PerImageDataset(SharedEpochMixin, torch.utils.data.Dataset):
    """A ``datasets.Dataset`` whose batches are ``{"pixel_values" [B, 3, S, S] float, "labels" [B] int64,
    "index" [B] int64}``: rows fetched in one call (``__getitems__``), each image transformed on its own.

    With ``seed`` set (training), the transform of example ``i`` runs with the global generators seeded from
    ``keyed_hash(seed, epoch, i)``, so its random crop / RandAugment / erasing is a function of (seed, epoch, index)
    whatever worker or process decodes it; the trainer sets the epoch (``set_epoch``). ``seed=None`` (evaluation)
    leaves the generators alone. Images are decoded here, in the worker, by their bit depth (``images.decode_rgb``);
    one that does not decode is a ``DataError`` naming ``split`` and its row. The epoch is shared with DataLoader
    workers, persistent ones included (``shared_epoch``).
    """

    def __init__(
        self, dataset: datasets.Dataset, image_column: str, label_column: str, transform: Callable,
        seed: int | None = None, split: str = "train",
    ) -> None:
        self.dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
        self.image_column = image_column
        self.label_column = label_column
        self.transform = transform
        self.seed = seed
        self.split = split
        self._epoch = SharedEpoch(0)

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def labels(self) -> torch.Tensor:
        """Every example's label ``[N]`` (int64), read without decoding images (CRD samples by them)."""
        return torch.as_tensor(self.dataset.with_format(None)[self.label_column], dtype=torch.int64)

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(list(indices), dtype=torch.int64)
        rows = self.dataset[list(indices)]
        images = [decode_rgb(item, self.split, row) for item, row in zip(rows[self.image_column], indices)]
        if self.seed is None:
            pixels = [self.transform(image) for image in images]
        else:
            keys = keyed_hash(self.seed, self.epoch, index).tolist()
            pixels = [augment_image(image, self.transform, key) for image, key in zip(images, keys)]
        labels = torch.as_tensor(rows[self.label_column], dtype=torch.int64)
        return {"pixel_values": torch.stack(pixels), "labels": labels, "index": index}

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {k: v[0] for k, v in self.__getitems__([i]).items()}
