"""decode_on_device: batched decode_jpeg (here its CPU path) against PIL, keyed crops, the evaluation view against
the CPU evaluation transform, a short training run through the trainer's device transform, and the refusals."""

from __future__ import annotations

import io

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from hfkd.config import DataArguments, DistillationConfig
from hfkd.data import collate_image_batch, prepare_datasets
from hfkd.data.device_decode import EncodedImageDataset, decode_batch
from hfkd.data.transforms import imagenet_eval_transform
from hfkd.errors import RecipeError
from hfkd.models import create_model
from hfkd.trainer import DistillationTrainer
from tests.test_data_sources import imagenet_like

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def encode(array: np.ndarray, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imagenet_like") / "saved"
    imagenet_like(folder.parent, n_train=8, n_val=4).save_to_disk(str(folder))
    return str(folder)


def test_batched_decode_matches_pil_and_falls_back_for_png_and_grayscale():
    rng = np.random.default_rng(0)
    smooth = [np.kron(rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))
              for h, w in ((48, 64), (80, 40))]
    gray = np.kron(rng.integers(0, 255, (6, 6), dtype=np.uint8), np.ones((8, 8), np.uint8))
    encoded = [encode(smooth[0]), encode(smooth[1]), encode(gray), encode(smooth[0], "PNG")]
    images = decode_batch(encoded, "cpu")
    assert [tuple(i.shape) for i in images] == [(3, 48, 64), (3, 80, 40), (3, 48, 48), (3, 48, 64)]
    for image, data in zip(images, encoded):
        reference = torch.from_numpy(np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))).permute(2, 0, 1)
        assert (image.int() - reference.int()).abs().max() <= 2  # libjpeg builds may round a level apart
    assert torch.equal(images[3], torch.from_numpy(smooth[0]).permute(2, 0, 1))  # PNG: lossless, exact


def test_training_views_are_keyed_and_evaluation_matches_the_cpu_transform(saved):
    data = prepare_datasets(DataArguments(dataset_name=saved, decode_on_device=True, image_size=32), seed=2)
    train, evaluation = data.train_dataset, data.eval_dataset
    assert isinstance(train, EncodedImageDataset)
    loader = torch.utils.data.DataLoader(train, batch_size=4, num_workers=2, collate_fn=collate_image_batch)
    batches = [train.device_transform(b) for b in loader]
    assert [tuple(b["pixel_values"].shape) for b in batches] == [(4, 3, 32, 32)] * 2
    alone = train.device_transform(train.__getitems__([5]))["pixel_values"][0]
    assert torch.equal(alone, batches[1]["pixel_values"][1])  # example 5: the same view in any batch or worker
    train.set_epoch(1)
    assert not torch.equal(train.device_transform(train.__getitems__([5]))["pixel_values"][0], alone)
    got = evaluation.device_transform(evaluation.__getitems__([0, 3]))["pixel_values"]
    pictures = evaluation.dataset.cast_column("image", datasets.Image())[[0, 3]]["image"]
    expected = torch.stack([imagenet_eval_transform(IMAGENET_MEAN, IMAGENET_STD, 32)(p) for p in pictures])
    assert got.shape == expected.shape == (2, 3, 32, 32)
    assert (got - expected).abs().mean() < 0.05  # tensor vs PIL antialiased resize: a few levels apart


def test_a_short_run_decodes_on_the_device_for_training_and_evaluation(saved, tmp_path):
    data = prepare_datasets(DataArguments(dataset_name=saved, decode_on_device=True, image_size=32,
                                          mixup_alpha=0.4))
    torch.manual_seed(0)
    trainer = DistillationTrainer(
        model=create_model("resnet8", num_classes=3), teacher=create_model("resnet8", num_classes=3),
        args=DistillationConfig(output_dir=str(tmp_path), method="kd", num_train_epochs=1, lr_decay_epochs=[],
                                per_device_train_batch_size=4, per_device_eval_batch_size=4, save_strategy="no",
                                report_to=[], use_cpu=True, disable_tqdm=True),
        train_dataset=data.train_dataset, eval_dataset=data.eval_dataset, mixup=data.mixup)
    trainer.train()
    evaluation = [row for row in trainer.state.log_history if "eval_top1" in row]
    assert trainer.state.global_step == 2 and len(evaluation) == 1 and 0 <= evaluation[0]["eval_top1"] <= 100


@pytest.mark.parametrize("values, named", [
    (dict(auto_augment="rand-m9"), "auto_augment"), (dict(reprob=0.25), "reprob"),
    (dict(transform_preset="cifar"), "transform_preset: cifar"), (dict(streaming=True), "streaming"),
])
def test_per_image_policies_are_refused_with_device_decoding(values, named):
    with pytest.raises(RecipeError, match=f"cannot be combined with {named}"):
        DataArguments(dataset_name="x", decode_on_device=True, **values)
