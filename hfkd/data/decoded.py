"""Small-image datasets decoded once into a uint8 tensor, so no epoch decodes PNG/JPEG again."""

from __future__ import annotations

from collections.abc import Callable

import datasets
import numpy as np
import torch

from ..errors import DataError
from .images import decode_rgb, describe_row, open_image
from .shared_epoch import SharedEpoch, SharedEpochMixin


def decode_images(dataset: datasets.Dataset, image_column: str, split: str = "train") -> torch.Tensor:
    """Every image of ``dataset`` as RGB uint8 ``[N, 3, H, W]`` (16-bit grayscale by its bit depth, ``images.to_rgb``);
    all images must share one size, which is checked from each header before its pixels are decoded. A bad image is
    a ``DataError`` naming ``split`` and its row."""
    raw = dataset.cast_column(image_column, datasets.Image(decode=False))[image_column]
    arrays = []
    for row, item in enumerate(raw):
        with open_image(item, split, row) as image:
            size = image.size
        if arrays and size != (arrays[0].shape[1], arrays[0].shape[0]):
            raise DataError(
                f"{describe_row(split, row, item)} is {size[0]}x{size[1]} but row 0 is "
                f"{arrays[0].shape[1]}x{arrays[0].shape[0]}; the 'cifar' preset needs one image size, use 'imagenet'"
            )
        arrays.append(np.asarray(decode_rgb(item, split, row)))
    if not arrays:
        raise DataError(f"the {split} split is empty")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


class DecodedImageDataset(SharedEpochMixin, torch.utils.data.Dataset):
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
        self._epoch = SharedEpoch(0)  # read by DataLoader workers too, also persistent ones (``shared_epoch``)

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
