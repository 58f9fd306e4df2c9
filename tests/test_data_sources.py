"""Every source kind (parquet folder, save_to_disk folder, image folders, built-in) in the cifar100 and
imagenet-1k schemas, the ImageNet preset, and the held-out split for datasets without one."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from hfkd.config import DataArguments
from hfkd.data import collate_image_batch, load_splits, prepare_datasets
from hfkd.models import Preprocessing
from tests.conftest import write_image_dataset

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def imagenet_like(tmp_path, n_train=12, n_val=6, num_classes=3) -> datasets.DatasetDict:
    """The ILSVRC/imagenet-1k schema: `image` (JPEG, varying sizes, some grayscale) and `label` (ClassLabel)."""
    rng = np.random.default_rng(0)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=[
        f"n{i:08d}" for i in range(num_classes)])})
    splits = {}
    for split, n in (("train", n_train), ("validation", n_val)):
        images = []
        for i in range(n):
            h, w = int(rng.integers(80, 140)), int(rng.integers(80, 140))
            mode = "L" if i % 4 == 3 else "RGB"
            array = rng.integers(0, 255, (h, w) if mode == "L" else (h, w, 3), dtype=np.uint8)
            images.append(Image.fromarray(array, mode=mode))
        splits[split] = datasets.Dataset.from_dict(
            {"image": images, "label": [i % num_classes for i in range(n)]}, features=features)
    return datasets.DatasetDict(splits)


def test_cifar100_schema_from_parquet_and_save_to_disk(tmp_path, cifar_like_dir):
    from_parquet = prepare_datasets(DataArguments(dataset_name=cifar_like_dir))
    saved = tmp_path / "saved"
    datasets.load_dataset(cifar_like_dir).save_to_disk(str(saved))
    from_disk = prepare_datasets(DataArguments(dataset_name=str(saved)))
    for data in (from_parquet, from_disk):
        assert data.preset == "cifar" and data.num_classes == 4
        batch = data.eval_dataset.__getitems__([0, 1, 2])
        assert batch["pixel_values"].shape == (3, 3, 32, 32) and batch["pixel_values"].dtype == torch.float32
        assert batch["labels"].dtype == torch.int64
    assert torch.equal(from_parquet.eval_dataset.images, from_disk.eval_dataset.images)


def test_imagenet_schema_uses_the_imagenet_preset(tmp_path):
    saved = tmp_path / "imagenet_like"
    imagenet_like(tmp_path).save_to_disk(str(saved))
    data = prepare_datasets(DataArguments(dataset_name=str(saved)))
    assert data.preset == "imagenet" and data.image_size == 224
    assert data.mean == IMAGENET_MEAN and data.stats_source == "the imagenet constants"  # recognised by name
    train = collate_image_batch([data.train_dataset[i] for i in range(4)])
    assert train["pixel_values"].shape == (4, 3, 224, 224) and train["labels"].tolist() == [0, 1, 2, 0]
    # evaluation: Resize(256) + CenterCrop(224), deterministic; training: random crops
    first = data.eval_dataset[3]["pixel_values"]  # a grayscale source image, converted to RGB
    assert first.shape == (3, 224, 224) and torch.equal(first, data.eval_dataset[3]["pixel_values"])
    # training: random crops keyed to (seed, epoch, index): the same view within an epoch, a new one the next epoch
    view = data.train_dataset[0]["pixel_values"]
    assert torch.equal(view, data.train_dataset[0]["pixel_values"])
    data.train_dataset.set_epoch(1)
    assert not torch.equal(view, data.train_dataset[0]["pixel_values"])
    # the processor saved with an export reproduces the evaluation transform's geometry
    processor = data.image_processor()
    assert processor.crop_pct == pytest.approx(224 / 256) and list(processor.image_mean) == list(IMAGENET_MEAN)


def test_image_folders(tmp_path):
    for split, n in (("train", 8), ("val", 4)):
        for c in ("cat", "dog"):
            folder = tmp_path / split / c
            folder.mkdir(parents=True)
            for i in range(n // 2):
                Image.fromarray(np.full((32, 32, 3), 40 if c == "cat" else 200, np.uint8)).save(folder / f"{i}.png")
    data = prepare_datasets(DataArguments(train_dir=str(tmp_path / "train"), validation_dir=str(tmp_path / "val")))
    assert data.label_names == ["cat", "dog"] and len(data.train_dataset) == 8 and len(data.eval_dataset) == 4
    assert sorted(data.eval_dataset.labels.tolist()) == [0, 0, 1, 1]


def test_held_out_split_when_there_is_no_validation_split(tmp_path):
    folder = tmp_path / "train_only"
    folder.mkdir()
    write_image_dataset(folder, splits={"train": 40})
    with pytest.raises(Exception, match="has no 'validation' or 'test' split .* train_val_split"):
        load_splits(DataArguments(dataset_name=str(folder)))
    splits = load_splits(DataArguments(dataset_name=str(folder), train_val_split=0.2), seed=3)
    assert len(splits.train) == 32 and len(splits.eval) == 8
    assert sorted(splits.eval["label"]) == [0, 0, 1, 1, 2, 2, 3, 3]  # stratified by class
    again = load_splits(DataArguments(dataset_name=str(folder), train_val_split=0.2), seed=3)
    assert again.eval["label"] == splits.eval["label"]  # seeded


def test_a_pretrained_students_normalisation_wins_over_the_dataset_constants():
    student = Preprocessing((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), None)
    data = prepare_datasets(DataArguments(dataset_name="builtin:cifar10-quickstart", max_train_samples=10,
                                          max_eval_samples=10), model_preprocessing=student)
    assert data.mean == (0.5, 0.5, 0.5) and data.stats_source == "the student's image processor"
    recipe = prepare_datasets(DataArguments(dataset_name="builtin:cifar10-quickstart", max_train_samples=10,
                                            max_eval_samples=10, image_mean=[0.1] * 3, image_std=[0.2] * 3),
                              model_preprocessing=student)
    assert recipe.mean == (0.1, 0.1, 0.1) and recipe.stats_source == "the recipe"


def test_per_image_path_decodes_in_dataloader_workers(tmp_path):
    saved = tmp_path / "imagenet_like"
    imagenet_like(tmp_path, n_train=8).save_to_disk(str(saved))
    data = prepare_datasets(DataArguments(dataset_name=str(saved)))
    loader = torch.utils.data.DataLoader(data.train_dataset, batch_size=4, num_workers=2,
                                         collate_fn=collate_image_batch)
    batches = list(loader)
    assert [b["pixel_values"].shape for b in batches] == [(4, 3, 224, 224)] * 2
