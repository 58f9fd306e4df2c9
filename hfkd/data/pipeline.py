"""From a recipe's data keys to train / eval datasets ready for the trainer."""

from __future__ import annotations

from dataclasses import dataclass

import datasets
import torch

from ..errors import DataError, RecipeError
from .augmentation import (
    KeyedMixup,
    build_mixup,
    eval_interpolation,
    mixup_enabled,
    per_image_augmentation,
    train_transform,
)
from .decoded import DecodedImageDataset, decode_images
from .device_decode import DeviceDecoder, EncodedImageDataset
from .images import open_image
from .normalization import KNOWN_STATISTICS, compute_statistics, known_statistics
from .per_image import PerImageDataset
from .sources import ClassificationSplits, load_splits
from .streaming import StreamingImageDataset
from .transforms import (
    CROP_PADDING,
    cifar_eval_transform,
    cifar_train_transform,
    eval_image_processor,
    imagenet_eval_transform,
)

# images up to this side use the 'cifar' preset (decoded once, batched crop + flip) when the preset is 'auto'
SMALL_IMAGE_MAX_SIDE = 64


@dataclass
class PreparedData:
    """Datasets whose items are ``{"pixel_values", "labels"[, "index"]}``, and how they were made; ``mixup`` (timm's
    Mixup / CutMix, keyed) is what the trainer applies to training batches, or None."""

    train_dataset: torch.utils.data.Dataset
    eval_dataset: torch.utils.data.Dataset
    label_names: list[str]
    preset: str
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    stats_source: str
    dataset_name: str
    mixup: KeyedMixup | None = None
    interpolation: str = "bilinear"

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def image_processor(self):
        """The evaluation preprocessing as a transformers image processor (saved with the export)."""
        return eval_image_processor(self.preset, self.image_size, self.mean, self.std, self.interpolation)


def _choose_statistics(data_args, name: str, train_images: torch.Tensor | None, model_preprocessing=None):
    """Normalisation, in order: the recipe, the pretrained student's image processor, the dataset's known
    constants, statistics of the (small) training images, the ImageNet constants."""
    if (data_args.image_mean is None) != (data_args.image_std is None):
        raise RecipeError("set both image_mean and image_std, or neither")
    if data_args.image_mean is not None:
        return tuple(data_args.image_mean), tuple(data_args.image_std), "the recipe"
    if model_preprocessing is not None:
        return tuple(model_preprocessing.mean), tuple(model_preprocessing.std), "the student's image processor"
    known = known_statistics(name)
    if known is not None:
        key, (mean, std) = known
        return mean, std, f"the {key} constants"
    if train_images is not None:
        mean, std = compute_statistics(train_images)
        return mean, std, "computed from the training images"
    mean, std = KNOWN_STATISTICS["imagenet"]
    return mean, std, "the imagenet constants (default)"


def _imagenet_size(data_args, model_preprocessing, model_input_size: int | None = None) -> int:
    """The 'imagenet' preset's crop side: the recipe's image_size, else the size the student requires
    (``model_input_size``), else the student's declared size, else 224."""
    declared = model_preprocessing.size if model_preprocessing is not None else None
    return data_args.image_size or model_input_size or declared or 224


def _check_labels(labels: torch.Tensor, num_classes: int, split: str) -> None:
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise DataError(
            f"the {split} split has labels from {low} to {high}, outside 0..{num_classes - 1} "
            f"(an unlabelled split uses -1); choose a labelled split"
        )


def _check_crop_size(images: torch.Tensor, name: str) -> None:
    """The 'cifar' preset's random crop pads by CROP_PADDING pixels; on images no larger than that, some crops hold
    padding alone (a 1x1 image is absent from 80 of every 81), and training is meaningless (the issue measured an
    evaluation loss of 2.8e24 on 1x1 images)."""
    height, width = images.shape[-2:]
    if min(height, width) <= CROP_PADDING:
        raise DataError(
            f"the images of dataset {name!r} are {width}x{height} pixels, but the 'cifar' preset pads by {CROP_PADDING} "
            f"pixels before its random crop, so images of {CROP_PADDING} pixels or fewer would train on crops of "
            f"padding alone; use larger images, or transform_preset: imagenet to resize them"
        )


def prepare_datasets(
    data_args, splits: ClassificationSplits | None = None, model_preprocessing=None, seed: int = 0,
    model_input_size: int | None = None,
) -> PreparedData:
    """Load (unless ``splits`` are given), pick the preset, decode small images once, attach the transforms.

    ``model_preprocessing`` (a pretrained student's declared normalisation and input size) takes precedence over
    the dataset's statistics, so pretrained weights see the inputs they were trained on. ``model_input_size`` is the
    side the student requires (``hfkd.models.required_input_size``, e.g. 224 for a ViT with fixed position
    embeddings): the 'auto' preset then keeps small images at their size only when it is that one, and otherwise
    resizes them to it with the 'imagenet' preset.
    """
    splits = splits if splits is not None else load_splits(data_args, seed=seed)
    if splits.num_train_examples is not None:
        return _prepare_streamed(data_args, splits, model_preprocessing, seed)
    num_classes = len(splits.label_names)
    preset = data_args.transform_preset
    if preset == "auto":
        raw = splits.train.cast_column(splits.image_column, datasets.Image(decode=False))
        if len(raw) == 0:
            raise DataError(f"the {splits.train_split} split is empty")
        with open_image(raw[0][splits.image_column], splits.train_split, 0) as first:
            width, height = first.size
        small = max(width, height) <= SMALL_IMAGE_MAX_SIDE and model_input_size in (None, max(width, height))
        preset = "cifar" if small else "imagenet"
        if preset == "cifar" and per_image_augmentation(data_args):
            raise RecipeError(
                f"{', '.join(per_image_augmentation(data_args))} apply to the 'imagenet' preset, but these images "
                f"({width}x{height}) get the 'cifar' preset; set transform_preset: imagenet"
            )

    train_labels = torch.as_tensor(splits.train[splits.label_column])
    eval_labels = torch.as_tensor(splits.eval[splits.label_column])
    _check_labels(train_labels, num_classes, "train")
    _check_labels(eval_labels, num_classes, "eval")
    interpolation = eval_interpolation(data_args) if preset == "imagenet" else "bilinear"

    if preset == "cifar":
        train_images = decode_images(splits.train, splits.image_column, splits.train_split)
        _check_crop_size(train_images, splits.name)
        eval_images = decode_images(splits.eval, splits.image_column, splits.eval_split)
        mean, std, source = _choose_statistics(data_args, splits.name, train_images, model_preprocessing)
        on_device = data_args.augment_on_device
        train = DecodedImageDataset(
            train_images, train_labels, cifar_train_transform(mean, std, seed=seed),
            with_index=mixup_enabled(data_args), on_device=on_device,
        )
        evaluation = DecodedImageDataset(eval_images, eval_labels, cifar_eval_transform(mean, std), on_device=on_device)
        image_size = int(train_images.shape[-1])
    else:
        mean, std, source = _choose_statistics(data_args, splits.name, None, model_preprocessing)
        image_size = _imagenet_size(data_args, model_preprocessing, model_input_size)
        if data_args.decode_on_device:
            columns = splits.image_column, splits.label_column
            train = EncodedImageDataset(splits.train, *columns, DeviceDecoder(
                image_size, mean, std, seed, data_args.train_crop_scale, data_args.interpolation))
            evaluation = EncodedImageDataset(splits.eval, *columns, DeviceDecoder(
                image_size, mean, std, None, interpolation=interpolation))
        else:
            train = PerImageDataset(splits.train, splits.image_column, splits.label_column,
                                    train_transform(data_args, image_size, mean, std), seed=seed,
                                    split=splits.train_split)
            evaluation = PerImageDataset(splits.eval, splits.image_column, splits.label_column,
                                         imagenet_eval_transform(mean, std, image_size, interpolation=interpolation),
                                         split=splits.eval_split)
    return PreparedData(
        train, evaluation, splits.label_names, preset, image_size, mean, std, source, splits.name,
        mixup=build_mixup(data_args, num_classes, seed),
        interpolation=interpolation,
    )


def _prepare_streamed(data_args, splits: ClassificationSplits, model_preprocessing, seed: int) -> PreparedData:
    """A streamed train split (decoded per image, 'imagenet' preset) and its map-style eval split."""
    num_classes = len(splits.label_names)
    _check_labels(torch.as_tensor(splits.eval[splits.label_column]), num_classes, "eval")
    mean, std, source = _choose_statistics(data_args, splits.name, None, model_preprocessing)
    image_size = _imagenet_size(data_args, model_preprocessing)
    interpolation = eval_interpolation(data_args)
    train = StreamingImageDataset(splits.train, splits.num_train_examples, splits.image_column, splits.label_column,
                                  train_transform(data_args, image_size, mean, std), seed=seed)
    evaluation = PerImageDataset(splits.eval, splits.image_column, splits.label_column,
                                 imagenet_eval_transform(mean, std, image_size, interpolation=interpolation),
                                 split=splits.eval_split)
    return PreparedData(train, evaluation, splits.label_names, "imagenet", image_size, mean, std, source, splits.name,
                        mixup=build_mixup(data_args, num_classes, seed), interpolation=interpolation)
