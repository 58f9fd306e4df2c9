"""Data: sources and column detection, the decoded-once path, the CIFAR transforms, normalisation statistics."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch

from hfkd.config import DataArguments
from hfkd.data import compute_statistics, decode_images, known_statistics, load_splits, prepare_datasets
from hfkd.data.transforms import Normalize, RandomCropFlip
from hfkd.errors import DataError
from tests.conftest import write_image_dataset


def test_builtin_quickstart_dataset():
    data = prepare_datasets(DataArguments(dataset_name="builtin:cifar10-quickstart", max_eval_samples=100))
    assert len(data.train_dataset) == 5000 and len(data.eval_dataset) == 100
    assert data.label_names[:2] == ["airplane", "automobile"] and data.num_classes == 10
    assert data.preset == "cifar" and data.image_size == 32
    assert data.mean == (0.4914, 0.4822, 0.4465) and data.stats_source == "the cifar10 constants"
    counts = torch.bincount(data.train_dataset.labels, minlength=10)
    assert counts.tolist() == [500] * 10  # class-balanced


def test_cifar100_schema_prefers_fine_label(cifar_like_dir):
    splits = load_splits(DataArguments(dataset_name=cifar_like_dir))
    assert (splits.image_column, splits.label_column) == ("img", "fine_label")
    assert splits.eval is not None and len(splits.train) == 64 and len(splits.eval) == 32
    coarse = load_splits(DataArguments(dataset_name=cifar_like_dir, label_column_name="coarse_label"))
    assert coarse.label_names == ["a", "b"]


def test_wrong_column_name_lists_the_columns(cifar_like_dir):
    with pytest.raises(DataError, match=r"has no label column 'label'; its columns are \['img', 'fine_label', "):
        load_splits(DataArguments(dataset_name=cifar_like_dir, label_column_name="label"))


def test_missing_split_is_one_sentence(cifar_like_dir):
    with pytest.raises(DataError, match="has no split 'validation'; its splits are"):
        load_splits(DataArguments(dataset_name=cifar_like_dir, eval_split="validation"))


def test_decoded_once_equals_decoding_each_time(cifar_like_dir):
    splits = load_splits(DataArguments(dataset_name=cifar_like_dir))
    decoded = decode_images(splits.train, "img")
    assert decoded.dtype == torch.uint8 and decoded.shape == (64, 3, 32, 32)
    for i in (0, 17, 63):
        image = splits.train[i]["img"]  # decoded by datasets / PIL
        expected = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
        assert torch.equal(decoded[i], expected)


def test_grayscale_images_become_rgb(tmp_path):
    folder = tmp_path / "gray"
    folder.mkdir()
    write_image_dataset(folder, image_column="image", size=28, mode="L")
    data = prepare_datasets(DataArguments(dataset_name=str(folder)))
    batch = data.train_dataset.__getitems__([0, 1])
    assert batch["pixel_values"].shape == (2, 3, 28, 28)
    assert data.stats_source == "computed from the training images"


def test_normalisation_statistics():
    assert known_statistics("uoft-cs/cifar100")[0] == "cifar100"
    assert known_statistics("uoft-cs/cifar10")[0] == "cifar10"
    assert known_statistics("ILSVRC/imagenet-1k")[0] == "imagenet"
    assert known_statistics("someone/flowers") is None
    images = torch.zeros(2, 3, 1, 2, dtype=torch.uint8)
    images[:, 0] = 255  # red channel all 1.0, others 0
    images[0, 1, 0, 0] = 255  # one of four green pixels is 1.0 -> mean 0.25, std sqrt(0.1875)
    mean, std = compute_statistics(images)
    assert mean == (1.0, 0.25, 0.0) and std == pytest.approx((0.0, 0.433, 0.0), abs=1e-3)


def test_normalize_and_crop_flip():
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).view(2, 3, 4, 4)
    out = Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))(images)
    assert torch.allclose(out, (images.float() / 255 - 0.5) / 0.5)
    torch.manual_seed(0)
    cropped = RandomCropFlip(padding=1)(images, torch.arange(2), epoch=0)
    assert cropped.shape == images.shape and cropped.dtype == torch.uint8
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1))
    for b in range(2):  # every output is some 4x4 window of the zero-padded input, possibly mirrored
        windows = [padded[b, :, i : i + 4, j : j + 4] for i in range(3) for j in range(3)]
        windows += [w.flip(-1) for w in windows]
        assert any(torch.equal(cropped[b], w) for w in windows)


def test_augmentation_is_random_in_training_and_fixed_in_evaluation():
    data = prepare_datasets(DataArguments(dataset_name="builtin:cifar10-quickstart", max_train_samples=64,
                                          max_eval_samples=64))
    train = data.train_dataset
    a = train.__getitems__(list(range(64)))["pixel_values"]
    # a draw is a function of (seed, epoch, index): the same within an epoch, whichever batch the example is in
    assert torch.equal(a[10:20], train.__getitems__(list(range(10, 20)))["pixel_values"])
    train.set_epoch(1)
    b = train.__getitems__(list(range(64)))["pixel_values"]
    assert not torch.equal(a, b)
    changed = (a != b).flatten(1).any(1).float().mean().item()
    assert changed > 0.8  # nearly every example gets a fresh crop / flip in a new epoch (9 x 9 x 2 outcomes)
    c = data.eval_dataset.__getitems__(list(range(64)))["pixel_values"]
    d = data.eval_dataset.__getitems__(list(range(64)))["pixel_values"]
    assert torch.equal(c, d)
    # evaluation images are exactly normalised pixels
    raw = data.eval_dataset.images[:64].float() / 255
    mean = torch.tensor(data.mean).view(1, 3, 1, 1)
    std = torch.tensor(data.std).view(1, 3, 1, 1)
    assert torch.allclose(c, (raw - mean) / std, atol=1e-6)


def test_unlabelled_split_is_refused(tmp_path):
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    features = datasets.Features({"img": datasets.Image(), "label": datasets.Value("int64")})
    for split, label in (("train", 0), ("test", -1)):
        datasets.Dataset.from_dict({"img": [torch.zeros(8, 8, 3, dtype=torch.uint8).numpy()] * 4,
                                    "label": [label, 1, 0, 1]}, features=features).to_parquet(
            str(folder / f"{split}-00000-of-00001.parquet"))
    with pytest.raises(DataError, match="the eval split has labels from -1 to 1"):
        prepare_datasets(DataArguments(dataset_name=str(folder)))
