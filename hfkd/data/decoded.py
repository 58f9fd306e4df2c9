"""Small-image datasets decoded once into a uint8 tensor, so no epoch decodes PNG/JPEG again."""

from __future__ import annotations

import io
from collections.abc import Callable

import datasets
import numpy as np
import torch
from PIL import Image

from ..errors import DataError


def decode_images(dataset: datasets.Dataset, image_column: str) -> torch.Tensor:
    """Every image of ``dataset`` as RGB uint8 ``[N, 3, H, W]``; all images must share one size."""
    raw = dataset.cast_column(image_column, datasets.Image(decode=False))[image_column]
    arrays = []
    for i, item in enumerate(raw):
        source = io.BytesIO(item["bytes"]) if item.get("bytes") is not None else item["path"]
        with Image.open(source) as image:
            arrays.append(np.asarray(image.convert("RGB")))
        if arrays[-1].shape != arrays[0].shape:
            raise DataError(
                f"image {i} is {arrays[-1].shape[1]}x{arrays[-1].shape[0]} but image 0 is "
                f"{arrays[0].shape[1]}x{arrays[0].shape[0]}; the 'cifar' preset needs one image size, use 'imagenet'"
            )
    if not arrays:
        raise DataError("the dataset split is empty")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


class DecodedImageDataset(torch.utils.data.Dataset):
    """uint8 images + int64 labels in memory; a batch is fetched and transformed in one call (``__getitems__``).

    Items are ``{"pixel_values", "labels"}`` (plus ``"index"``, the example's position, when ``with_index``). The
    transform is called as ``transform(images, index, epoch)``; the trainer sets the epoch (``set_epoch``) at the
    start of every epoch, so random augmentation is a function of (seed, epoch, index).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        transform: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor],
        with_index: bool = False,
        on_device: bool = False,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("images must be uint8 [N, C, H, W]")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.transform = transform
        self.with_index = with_index
        self.on_device = on_device
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.int64)
        if self.on_device:  # raw uint8 and the indices; device_transform runs where the batch is trained on
            return {"pixel_values": self.images[index], "labels": self.labels[index], "index": index}
        batch = {"pixel_values": self.transform(self.images[index], index, self.epoch), "labels": self.labels[index]}
        if self.with_index:
            batch["index"] = index
        return batch

    def device_transform(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Transform a batch that ``__getitems__`` left raw (``on_device``), on whatever device it now is.

        Uses the epoch set by ``set_epoch``, as ``__getitems__`` does, so both paths augment alike.
        """
        if batch["pixel_values"].dtype != torch.uint8:
            return batch
        pixels = self.transform(batch["pixel_values"], batch["index"], self.epoch)
        batch = {**batch, "pixel_values": pixels}
        if not self.with_index:
            batch.pop("index")
        return batch

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([i]).items()}
