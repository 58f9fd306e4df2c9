"""Shared fixtures: small learnable image data, generated in the schemas the real datasets use. No network."""

from __future__ import annotations

import copy
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from hfkd.data import DecodedImageDataset  # noqa: E402
from hfkd.data.transforms import cifar_eval_transform, cifar_train_transform  # noqa: E402
from tests.hub_server import hub_server  # noqa: E402, F401  (the local Hub server fixture, for every test module)

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def learnable_images(n: int, num_classes: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``[n, 3, size, size]`` images whose class sets a colour and a bright quadrant, plus noise."""
    labels = torch.arange(n) % num_classes
    # the class -> colour map is the same for every split; only the noise depends on the seed
    colours = torch.rand(num_classes, 3, 1, 1, generator=torch.Generator().manual_seed(1234)) * 160 + 40
    g = torch.Generator().manual_seed(seed)
    images = colours[labels] + torch.randn(n, 3, size, size, generator=g) * 25
    half = size // 2
    for c in range(num_classes):
        rows, cols = divmod(c % 4, 2)
        images[labels == c, :, rows * half : (rows + 1) * half, cols * half : (cols + 1) * half] += 60
    return images.clamp(0, 255).to(torch.uint8), labels


def learnable_datasets(n_train: int = 256, n_eval: int = 128, num_classes: int = 4, with_index: bool = False):
    train_images, train_labels = learnable_images(n_train, num_classes, seed=0)
    eval_images, eval_labels = learnable_images(n_eval, num_classes, seed=1)
    train = DecodedImageDataset(train_images, train_labels, cifar_train_transform(MEAN, STD), with_index)
    evaluation = DecodedImageDataset(eval_images, eval_labels, cifar_eval_transform(MEAN, STD))
    return train, evaluation


def write_image_dataset(
    folder, image_column: str = "img", label_column: str = "label", num_classes: int = 4, size: int = 32,
    splits: dict[str, int] | None = None, extra_label: str | None = None, mode: str = "RGB",
) -> str:
    """A parquet dataset in the Hub layout (``Image`` + ``ClassLabel`` features), e.g. the cifar100 schema."""
    splits = splits or {"train": 64, "test": 32}
    names = [f"class_{i}" for i in range(num_classes)]
    features = {image_column: datasets.Image(), label_column: datasets.ClassLabel(names=names)}
    if extra_label:
        features[extra_label] = datasets.ClassLabel(names=["a", "b"])
    for seed, (split, count) in enumerate(splits.items()):
        images, labels = learnable_images(count, num_classes, size=size, seed=seed)
        arrays = images.permute(0, 2, 3, 1).numpy()
        if mode == "L":
            arrays = arrays[..., 0]
        rows = {image_column: list(arrays), label_column: labels.tolist()}
        if extra_label:
            rows[extra_label] = (labels % 2).tolist()
        ds = datasets.Dataset.from_dict(rows, features=datasets.Features(features))
        ds.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))
    return str(folder)


@pytest.fixture()
def cifar_like_dir(tmp_path):
    """A tiny dataset in the ``uoft-cs/cifar100`` schema: ``img``, ``fine_label`` and ``coarse_label``."""
    folder = tmp_path / "cifar_like"
    folder.mkdir()
    return write_image_dataset(folder, label_column="fine_label", extra_label="coarse_label")


@pytest.fixture()
def learnable_data():
    return learnable_datasets()


@pytest.fixture(scope="session")
def _trained_resnet8(tmp_path_factory):
    from hfkd.config import DistillationConfig
    from hfkd.models import create_model
    from hfkd.trainer import DistillationTrainer

    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=4)
    args = DistillationConfig(
        output_dir=str(tmp_path_factory.mktemp("trained_resnet8")), method="none", num_train_epochs=3,
        per_device_train_batch_size=32, learning_rate=0.05, lr_decay_epochs=[], save_strategy="no",
        eval_strategy="no", logging_strategy="epoch", disable_tqdm=True, report_to="none", seed=0,
    )
    DistillationTrainer(model=model, args=args, train_dataset=learnable_datasets()[0]).train()
    return model.eval()


@pytest.fixture()
def trained_teacher(_trained_resnet8):
    """A resnet8 (seed 0) trained alone for 3 epochs on ``learnable_datasets()``'s training set, in eval mode: a
    teacher that knows the task. Trained once per session; each test gets its own copy (hooks, modes, no sharing)."""
    return copy.deepcopy(_trained_resnet8).eval()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
