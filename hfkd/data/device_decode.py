"""JPEG decoding on the training device (``decode_on_device: true``): DataLoader workers only read the encoded bytes;
the device decodes a whole batch at once (``torchvision.io.decode_jpeg``: nvJPEG on a GPU, libjpeg on the CPU) and
crops, flips and normalises there — the role DALI plays in the reference toolboxes' ImageNet loaders.

Training views are torchvision's RandomResizedCrop (area ``train_crop_scale``, default (0.08, 1), ratio (3/4, 4/3))
and a horizontal flip, with their parameters drawn per image under ``seeded_global_generators(keyed_hash(seed,
epoch, index))``: keyed like the CPU path's views (same example, same epoch, same view on any device, worker or
process), though not the same draws (torchvision's sampler, not timm's). Evaluation resizes the short side to ``size / 0.875`` and
center-crops. Images that ``decode_jpeg`` cannot read on the device (PNG, CMYK JPEG) are decoded on the CPU by
``torchvision.io.decode_image`` and moved there. The per-image timm policies (RandAugment, erasing, jitter) are PIL
transforms and are refused with this path; Mixup works (it runs on the batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import torch

from .keyed_random import keyed_hash, seeded_global_generators
from .transforms import EVAL_CROP_PCT

DEFAULT_SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)


def decode_batch(encoded: Sequence[bytes], device: torch.device | str) -> list[torch.Tensor]:
    """RGB uint8 ``[3, H, W]`` tensors on ``device``, one per encoded image (sizes differ), decoded in one batched
    ``decode_jpeg`` call; an image it rejects is decoded alone on the CPU (``decode_image``: PNG, CMYK, ...)."""
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in encoded]
    try:
        return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        images = []
        for one in data:
            try:
                images.append(decode_jpeg(one, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                images.append(decode_image(one, mode=ImageReadMode.RGB).to(device))
        return images


class DeviceDecoder:
    """Encoded images -> normalised float ``[B, 3, size, size]`` on a device; keyed random crops when ``seed`` is set
    (training), resize + center crop when it is None (evaluation)."""

    def __init__(
        self, size: int, mean: Sequence[float], std: Sequence[float], seed: int | None = None,
        scale: Sequence[float] | None = None, interpolation: str = "bilinear",
    ) -> None:
        self.size = size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.seed = seed
        self.scale = tuple(scale) if scale else DEFAULT_SCALE
        from torchvision.transforms import InterpolationMode

        self.interpolation = InterpolationMode("bilinear" if interpolation == "random" else interpolation)

    def _train_view(self, image: torch.Tensor, key: int) -> torch.Tensor:
        from torchvision.transforms import RandomResizedCrop
        from torchvision.transforms.v2 import functional as F

        with seeded_global_generators(key):
            top, left, height, width = RandomResizedCrop.get_params(image, list(self.scale), list(RATIO))
            flip = bool(torch.rand(1) < 0.5)
        view = F.resized_crop(image, top, left, height, width, [self.size, self.size], self.interpolation,
                              antialias=True)
        return view.flip(-1) if flip else view

    def _eval_view(self, image: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as F

        resized = F.resize(image, int(self.size / EVAL_CROP_PCT), self.interpolation, antialias=True)
        return F.center_crop(resized, [self.size, self.size])

    def __call__(self, encoded: Sequence[bytes], index: torch.Tensor, epoch: int,
                 device: torch.device | str) -> torch.Tensor:
        images = decode_batch(encoded, device)
        if self.seed is None:
            views = [self._eval_view(image) for image in images]
        else:
            keys = keyed_hash(self.seed, epoch, index.cpu()).tolist()
            views = [self._train_view(image, key) for image, key in zip(images, keys)]
        batch = torch.stack(views).to(torch.float32) / 255.0
        return (batch - self.mean.to(batch.device)) / self.std.to(batch.device)


class EncodedImageDataset(torch.utils.data.Dataset):
    """A ``datasets.Dataset`` whose batches carry the encoded images (``"encoded"``: a list of ``bytes``), ``labels``
    and ``index``; ``device_transform`` decodes and augments them where the batch is trained (the trainer calls it)."""

    def __init__(self, dataset: datasets.Dataset, image_column: str, label_column: str, decoder: DeviceDecoder) -> None:
        self.dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
        self.image_column = image_column
        self.label_column = label_column
        self.decoder = decoder
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def labels(self) -> torch.Tensor:
        return torch.as_tensor(self.dataset.with_format(None)[self.label_column], dtype=torch.int64)

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Any]:
        rows = self.dataset[list(indices)]
        encoded = [image["bytes"] if image.get("bytes") is not None else Path(image["path"]).read_bytes()
                   for image in rows[self.image_column]]
        return {"encoded": encoded, "labels": torch.as_tensor(rows[self.label_column], dtype=torch.int64),
                "index": torch.as_tensor(list(indices), dtype=torch.int64)}

    def device_transform(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Decode and augment ``batch["encoded"]`` on the device the batch's labels are on."""
        if "encoded" not in batch:
            return batch
        batch = dict(batch)
        encoded = batch.pop("encoded")
        batch["pixel_values"] = self.decoder(encoded, batch["index"], self.epoch, batch["labels"].device)
        return batch

    def __getitem__(self, i: int) -> dict[str, Any]:
        """A batch of one (examples are only ever fetched in batches: ``__getitems__``)."""
        return self.__getitems__([i])
