"""Bad data for a recipe (issue 16, kinds B, D, F): degenerate labels and images, columns of the wrong type, and image
sizes a model cannot take are one sentence before training (exit code 2, no traceback, no file changed); sizes a
model declares are resized to."""

from __future__ import annotations

import logging

import datasets
import numpy as np
import pytest
import torch
import yaml
from transformers import ViTConfig

from hfkd.config import DataArguments
from hfkd.data import load_splits, prepare_datasets
from hfkd.data.transforms import CROP_PADDING
from hfkd.errors import DataError
from hfkd.models import create_model, required_input_size
from hfkd.train import main
from tests.conftest import write_image_dataset
from tests.refusals import refused


def write_dataset(folder, labels: list, images=None, label_feature=None, extra: dict | None = None, size: int = 8):
    """A parquet dataset (train + test) with an ``img`` Image column and a ``label`` column of the given values."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = images if images is not None else [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in labels]
    features = {"img": datasets.Image(), "label": label_feature or datasets.Value("int64")}
    rows = {"img": images, "label": labels}
    for name, (feature, values) in (extra or {}).items():
        features[name], rows[name] = feature, values
    for split in ("train", "test"):
        ds = datasets.Dataset.from_dict(rows, features=datasets.Features(features))
        ds.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))
    return str(folder)


@pytest.fixture()
def run_dir(tmp_path):
    """A recipe (resnet8, one quick epoch) writing into an empty output folder beside a user's file (a folder holding
    the user's files is refused by the output-folder rule before any check these tests make)."""
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "notes.txt").write_text("mine\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "model_name_or_path": "resnet8", "method": "none", "output_dir": str(out), "num_train_epochs": 1,
        "lr_decay_epochs": [1], "per_device_train_batch_size": 8, "save_strategy": "no", "disable_tqdm": True,
    }))
    return tmp_path, recipe


def splits_of(folder: str, **keys):
    return load_splits(DataArguments(dataset_name=folder, **keys))


# ---- B: degenerate data ------------------------------------------------------------------------------------------

def test_labels_that_skip_values_are_refused(run_dir, capsys):
    tmp_path, recipe = run_dir
    data = write_dataset(tmp_path / "gaps", [*range(10), 999] * 2)
    error = refused([recipe, "--dataset_name", data], tmp_path, capsys)
    assert error == (f"the integer labels in column 'label' of dataset '{data}' skip values: 11 distinct labels from 0 "
                     f"to 999 (989 values in between never occur), which would train a 1000-class model; number the "
                     f"classes 0..10, or make the column a ClassLabel that names all 1000")


@pytest.mark.parametrize("labels, ok", [([0, 1, 2, 3], True), ([1, 2, 3], False), ([0, 2], False), ([0, 1, 1, 5], False),
                                        ([0, 1, -1], True)])
def test_sweep_integer_labels_must_be_numbered_from_zero(tmp_path, labels, ok):
    data = write_dataset(tmp_path / "d", labels * 2)
    if ok:
        assert splits_of(data).label_names == [str(i) for i in range(max(labels) + 1)]
    else:
        with pytest.raises(DataError, match="skip values"):
            splits_of(data)


def test_class_names_count_the_whole_split_not_the_kept_examples(tmp_path):
    data = write_dataset(tmp_path / "d", [0, 1, 2, 3, 4, 5])
    assert splits_of(data, max_train_samples=2).label_names == ["0", "1", "2", "3", "4", "5"]


def test_a_single_class_dataset_is_refused(run_dir, capsys):
    tmp_path, recipe = run_dir
    data = write_dataset(tmp_path / "one", [0] * 16, label_feature=datasets.ClassLabel(names=["cat"]))
    error = refused([recipe, "--dataset_name", data], tmp_path, capsys)
    assert error == (f"the training split of dataset '{data}' holds a single class, 'cat', in column 'label'; a "
                     f"classifier needs examples of at least 2 classes")


def test_sweep_single_class_by_integers_and_by_max_train_samples(tmp_path):
    with pytest.raises(DataError, match="holds a single class, '0', in column 'label'; a classifier"):
        splits_of(write_dataset(tmp_path / "ints", [0] * 8))
    sorted_by_class = write_dataset(tmp_path / "sorted", [0] * 8 + [1] * 8,
                                    label_feature=datasets.ClassLabel(names=["cat", "dog"]))
    with pytest.raises(DataError, match=r"holds a single class, 'cat', in column 'label' \(max_train_samples 4 kept "
                                        r"only its first examples\)"):
        splits_of(sorted_by_class, max_train_samples=4)
    assert splits_of(sorted_by_class, max_train_samples=9).label_names == ["cat", "dog"]
    with pytest.raises(DataError, match="holds no labelled example in column 'label'"):
        splits_of(write_dataset(tmp_path / "unlabelled", [-1] * 8))


def test_one_pixel_images_are_refused(run_dir, capsys):
    tmp_path, recipe = run_dir
    data = write_dataset(tmp_path / "px1", [0, 1] * 8, size=1)
    error = refused([recipe, "--dataset_name", data], tmp_path, capsys)
    assert error == (f"the images of dataset '{data}' are 1x1 pixels, but the 'cifar' preset pads by 4 pixels before "
                     f"its random crop, so images of 4 pixels or fewer would train on crops of padding alone; use "
                     f"larger images, or transform_preset: imagenet to resize them")


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_sweep_image_sizes_against_the_crop_padding(tmp_path, size):
    data = write_dataset(tmp_path / "d", [0, 1] * 4, size=size)
    args = DataArguments(dataset_name=data)
    if size <= CROP_PADDING:
        with pytest.raises(DataError, match=f"are {size}x{size} pixels, but the 'cifar' preset pads by 4"):
            prepare_datasets(args)
    else:
        assert prepare_datasets(args).image_size == size
    # the way out the sentence gives: resized by the 'imagenet' preset
    resized = prepare_datasets(DataArguments(dataset_name=data, transform_preset="imagenet"))
    assert resized.train_dataset[0]["pixel_values"].shape == (3, 224, 224)


# ---- D: column types ---------------------------------------------------------------------------------------------

def test_string_labels_are_refused(run_dir, capsys):
    tmp_path, recipe = run_dir
    data = write_dataset(tmp_path / "strings", ["truck", "cat"] * 8, label_feature=datasets.Value("string"))
    error = refused([recipe, "--dataset_name", data, "--label_column_name", "label"], tmp_path, capsys)
    assert error == (f"the label column 'label' of dataset '{data}' holds string values (e.g. 'truck'), but labels "
                     f"must be a ClassLabel or integers 0..K-1 to count the classes; set label_column_name to such a "
                     f"column or encode this one (datasets' class_encode_column)")


def test_a_list_column_as_the_image_column_is_refused(run_dir, capsys):
    tmp_path, recipe = run_dir
    data = write_dataset(tmp_path / "lists", [0, 1] * 8,
                         extra={"pixels": (datasets.Sequence(datasets.Value("float32")), [[0.5] * 4] * 16)})
    error = refused([recipe, "--dataset_name", data, "--image_column_name", "pixels"], tmp_path, capsys)
    assert error == f"the image column 'pixels' of dataset '{data}' holds lists, not images; set image_column_name to 'img'"


def test_the_image_column_as_the_label_column_is_refused(run_dir, capsys):
    tmp_path, recipe = run_dir
    data = write_dataset(tmp_path / "swap", [0, 1] * 8)
    error = refused([recipe, "--dataset_name", data, "--label_column_name", "img"], tmp_path, capsys)
    assert error == (f"the label column 'img' of dataset '{data}' holds images (e.g. an image), but labels must be a "
                     f"ClassLabel or integers 0..K-1 to count the classes; set label_column_name to such a column or "
                     f"encode this one (datasets' class_encode_column)")


@pytest.mark.parametrize(
    "column, keys, message",
    [
        ("floats", {"label_column_name": "floats"}, "the label column 'floats' of dataset '{data}' holds float32 values "
                                                    "(e.g. 0.5), but labels must be"),
        ("tags", {"label_column_name": "tags"}, "the label column 'tags' of dataset '{data}' holds lists (e.g. [0, 1]), "
                                                "but labels must be"),
        ("name", {"label_column_name": "name"}, "the label column 'name' of dataset '{data}' holds string values "
                                                "(e.g. 'a'), but labels must be"),
        ("name", {"image_column_name": "name"}, "the image column 'name' of dataset '{data}' holds string values, not "
                                                "images; set image_column_name to 'img'"),
        ("label", {"image_column_name": "label"}, "the image column 'label' of dataset '{data}' holds int64 values, not "
                                                  "images; set image_column_name to 'img'"),
    ],
)
def test_sweep_every_column_of_the_wrong_type(tmp_path, column, keys, message):
    extra = {"floats": (datasets.Value("float32"), [0.5] * 8),
             "tags": (datasets.Sequence(datasets.Value("int64")), [[0, 1]] * 8),
             "name": (datasets.Value("string"), ["a"] * 8)}
    data = write_dataset(tmp_path / "d", [0, 1] * 4, extra=extra)
    with pytest.raises(DataError) as err:
        splits_of(data, **keys)
    assert str(err.value).startswith(message.format(data=data))
    assert splits_of(data).label_names == ["0", "1"]  # the same dataset with its real columns


# ---- F: input sizes a model requires ------------------------------------------------------------------------------

def tiny_vit_config(folder, image_size: int = 224) -> str:
    ViTConfig(image_size=image_size, patch_size=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
              intermediate_size=32, num_labels=4).save_pretrained(folder)
    return str(folder)


def test_required_input_sizes_of_every_model_kind(tmp_path):
    assert required_input_size(create_model("vit_tiny_patch16_224", num_classes=4)) == 224  # timm, strict
    assert required_input_size(create_model("vit_tiny_patch16_224", num_classes=4, dynamic_img_size=True)) is None
    assert required_input_size(create_model(tiny_vit_config(tmp_path / "vit"))) == 224  # transformers
    assert required_input_size(create_model("resnet8", num_classes=4)) is None  # convnets take any size
    assert required_input_size(create_model("resnet18", num_classes=4)) is None  # a timm convnet


@pytest.fixture(scope="module")
def cifar32(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cifar32")
    return write_image_dataset(folder, splits={"train": 16, "test": 8})


def test_a_vit_student_on_32_pixel_images_is_fed_its_224(cifar32, tmp_path):
    """timm's vit_tiny_patch16_224 asserted 224x224 in its first step; 'auto' now resizes the images to it."""
    student = create_model("vit_tiny_patch16_224", num_classes=4)
    data = prepare_datasets(DataArguments(dataset_name=cifar32), model_input_size=required_input_size(student))
    assert (data.preset, data.image_size) == ("imagenet", 224)
    pixels = data.train_dataset[0]["pixel_values"]
    assert pixels.shape == (3, 224, 224)
    with torch.no_grad():
        assert student.eval()(pixels[None]).logits.shape == (1, 4)
    # a model that takes 32 pixels keeps the decode-once 'cifar' preset
    assert prepare_datasets(DataArguments(dataset_name=cifar32), model_input_size=32).preset == "cifar"


def test_a_vit_student_with_the_cifar_preset_is_refused_before_training(run_dir, cifar32, capsys):
    tmp_path, recipe = run_dir
    error = refused([recipe, "--dataset_name", cifar32, "--model_name_or_path", "vit_tiny_patch16_224",
                     "--transform_preset", "cifar"], tmp_path, capsys)
    assert error == (f"the student 'vit_tiny_patch16_224' cannot take the 32x32-pixel inputs of dataset '{cifar32}' "
                     f"(it takes 224x224 only): Input height (32) doesn't match model (224); choose a model for this "
                     f"input size or set transform_preset: imagenet to resize the images")


def test_a_transformers_vit_student_with_the_cifar_preset_is_refused(run_dir, cifar32, capsys):
    tmp_path, recipe = run_dir
    vit = tiny_vit_config(tmp_path / "vit")
    error = refused([recipe, "--dataset_name", cifar32, "--model_name_or_path", vit, "--transform_preset", "cifar"],
                    tmp_path, capsys)
    assert error.startswith(f"the student '{vit}' cannot take the 32x32-pixel inputs of dataset '{cifar32}' (it takes "
                            f"224x224 only): ")


def test_a_vit_teacher_declaring_224_is_fed_224_pixels(run_dir, cifar32, capsys, caplog):
    """A ViT teacher built from a config with image_size 224 failed inside the teacher check on 32-pixel data; the
    teacher adapter now resizes the student's batches to the size its patch embedding requires."""
    tmp_path, recipe = run_dir
    teacher = tiny_vit_config(tmp_path / "teacher")
    with caplog.at_level(logging.WARNING, logger="hfkd.train"):
        code = main([str(recipe), "--dataset_name", cifar32, "--teacher", teacher, "--method", "kd", "--max_steps", "2",
                     "--output_dir", str(tmp_path / "kd")])
    assert code == 0, capsys.readouterr().err
    assert any("at 224x224 pixels" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "kd" / "model.safetensors").is_file()
