"""timm augmentation as recipe keys: the transforms built, keyed views and Mixup draws (same key -> same draw, any
worker setting), the mixed batch the teacher and the ``cls`` term see, and the refusals."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hfkd.config import DataArguments, DistillationConfig
from hfkd.data import collate_image_batch, prepare_datasets
from hfkd.data.augmentation import MIXUP_SLOT, KeyedMixup, train_transform
from hfkd.data.keyed_random import keyed_hash
from hfkd.errors import IncompatibleSetupError, RecipeError
from hfkd.models import create_model
from hfkd.trainer import DistillationTrainer
from tests.conftest import learnable_datasets
from tests.test_data_sources import imagenet_like

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
DEIT = dict(auto_augment="rand-m9-mstd0.5-inc1", reprob=0.25, mixup_alpha=0.8, cutmix_alpha=1.0)


@pytest.fixture(scope="module")
def imagenet_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imagenet_like") / "saved"
    imagenet_like(folder.parent, n_train=10, n_val=4).save_to_disk(str(folder))
    return str(folder)


def test_recipe_keys_build_timms_transform():
    from timm.data.auto_augment import RandAugment
    from timm.data.random_erasing import RandomErasing
    from timm.data.transforms import RandomResizedCropAndInterpolation
    from torchvision.transforms import ColorJitter

    steps = train_transform(DataArguments(dataset_name="x", train_crop_scale=[0.35, 1.0], interpolation="bicubic",
                                          **DEIT), 224, MEAN, STD).transforms
    crop = steps[0]
    assert isinstance(crop, RandomResizedCropAndInterpolation) and crop.scale == (0.35, 1.0)
    assert any(isinstance(s, RandAugment) and len(s.ops) == 15 and s.num_layers == 2 for s in steps)  # inc1: 15 ops
    erasing = next(s for s in steps if isinstance(s, RandomErasing))
    assert erasing.probability == 0.25 and erasing.mode == "pixel"
    assert not any(isinstance(s, ColorJitter) for s in steps)  # timm turns jitter off under RandAugment
    plain = train_transform(DataArguments(dataset_name="x", color_jitter=0.4), 224, MEAN, STD).transforms
    assert [type(s).__name__ for s in plain] == [
        "RandomResizedCropAndInterpolation", "RandomHorizontalFlip", "ColorJitter", "MaybeToTensor", "Normalize"]
    assert plain[0].scale == (0.08, 1.0)  # the references' RandomResizedCrop(224)


@pytest.mark.parametrize("values, message", [
    (dict(auto_augment="rand-x9"), "auto_augment 'rand-x9' is not a timm policy"),
    (dict(reprob=1.5), r"reprob must be in \[0, 1\], got 1.5"),
    (dict(mixup_alpha=-1.0), "mixup_alpha must be >= 0"),
    (dict(interpolation="cubic"), "interpolation 'cubic' is not one of bilinear, bicubic, nearest, random"),
    (dict(train_crop_scale=[0.5]), r"train_crop_scale must be \[min, max\]"),
    (dict(transform_preset="cifar", auto_augment="rand-m9"), "auto_augment apply to the 'imagenet' preset"),
])
def test_bad_augmentation_keys_are_one_sentence(values, message):
    with pytest.raises(RecipeError, match=message):
        DataArguments(dataset_name="x", **values)


def test_a_view_is_keyed_to_seed_epoch_and_index_in_any_worker_setting(imagenet_dir):
    data = prepare_datasets(DataArguments(dataset_name=imagenet_dir, **DEIT), seed=3)
    train = data.train_dataset

    def views(batch_size, workers):
        loader = torch.utils.data.DataLoader(train, batch_size=batch_size, num_workers=workers,
                                             collate_fn=collate_image_batch)
        batches = list(loader)
        return torch.cat([b["pixel_values"] for b in batches]), torch.cat([b["index"] for b in batches])

    one, index = views(10, 0)
    two, index2 = views(3, 2)
    assert torch.equal(index, torch.arange(10)) and torch.equal(index2, index)
    assert torch.equal(one, two)  # same examples, same epoch: the same views, whichever worker decoded them
    state = random.getstate(), np.random.get_state()[1].copy(), torch.random.get_rng_state()
    assert torch.equal(train[7]["pixel_values"], one[7])
    # the keyed draws leave this process's own generators where they were
    assert random.getstate() == state[0] and np.array_equal(np.random.get_state()[1], state[1])
    assert torch.equal(torch.random.get_rng_state(), state[2])
    train.set_epoch(1)
    assert not torch.equal(train[7]["pixel_values"], one[7])
    reseeded = prepare_datasets(DataArguments(dataset_name=imagenet_dir, **DEIT), seed=4).train_dataset
    assert not torch.equal(reseeded[7]["pixel_values"], one[7])


def mixup_batch(n=6, num_classes=4):
    g = torch.Generator().manual_seed(0)
    return {"pixel_values": torch.randn(n, 3, 8, 8, generator=g), "labels": torch.arange(n) % num_classes,
            "index": torch.arange(10, 10 + n)}


def test_mixup_matches_its_definition_with_keyed_lambda():
    args = DataArguments(dataset_name="x", mixup_alpha=0.8)
    mixup = KeyedMixup(args, num_classes=4, seed=5)
    batch = mixup_batch()
    out = mixup(batch, epoch=2)
    # the draw by hand: timm's batch mode under NumPy seeded from keyed_hash(seed, epoch, first index, slot)
    key = int(keyed_hash(5, 2, torch.tensor([10]), MIXUP_SLOT)[0])
    rng = np.random.RandomState(key)
    assert rng.rand() < 1.0  # mixup_prob 1
    lam = float(rng.beta(0.8, 0.8))
    x = batch["pixel_values"]
    assert torch.allclose(out["pixel_values"], lam * x + (1 - lam) * x.flip(0), atol=1e-6)
    onehot = F.one_hot(batch["labels"], 4).float()
    assert torch.allclose(out["labels"], lam * onehot + (1 - lam) * onehot.flip(0), atol=1e-6)
    assert torch.equal(batch["pixel_values"], x)  # the loader's batch is not mixed in place
    # keyed: the same batch and epoch mix alike, another epoch or first index differently
    assert torch.equal(mixup(batch, epoch=2)["pixel_values"], out["pixel_values"])
    assert not torch.equal(mixup(batch, epoch=3)["pixel_values"], out["pixel_values"])
    shifted = {**batch, "index": batch["index"] + 1}
    assert not torch.equal(mixup(shifted, epoch=2)["pixel_values"], out["pixel_values"])


def test_cutmix_pastes_a_box_and_an_odd_batch_keeps_its_last_example():
    mixup = KeyedMixup(DataArguments(dataset_name="x", cutmix_alpha=1.0), num_classes=4, seed=0)
    batch = mixup_batch(n=5)
    out = mixup(batch, epoch=0)
    x, mixed = batch["pixel_values"], out["pixel_values"]
    assert torch.equal(mixed[4], x[4]) and torch.equal(out["labels"][4], F.one_hot(torch.tensor(0), 4).float())
    from_partner = (mixed[:4] == x[:4].flip(0)) & (mixed[:4] != x[:4])
    kept = mixed[:4] == x[:4]
    assert bool((from_partner | kept).all()) and bool(from_partner.any())  # every pixel: own or the partner's
    # the target weight of the own label is the kept area (timm's corrected lam)
    lam = kept[0, 0].float().mean()
    assert out["labels"][0, 0].item() == pytest.approx(lam.item())
    assert torch.allclose(out["labels"].sum(1), torch.ones(5))


class RecordingTeacher(torch.nn.Module):
    def __init__(self, teacher):
        super().__init__()
        self.teacher = teacher
        self.seen = []

    def forward(self, pixel_values, return_features=False):
        self.seen.append(pixel_values.clone())
        return self.teacher(pixel_values, return_features=return_features)


def test_teacher_sees_the_students_mixed_batch_and_cls_learns_mixed_targets(tmp_path):
    train, evaluation = learnable_datasets(n_train=16, n_eval=8, with_index=True)
    args = DataArguments(dataset_name="x", mixup_alpha=1.0, cutmix_alpha=1.0)
    mixup = KeyedMixup(args, num_classes=4, seed=0)
    torch.manual_seed(0)
    teacher = RecordingTeacher(create_model("resnet8", num_classes=4))
    trainer = DistillationTrainer(
        model=create_model("resnet8", num_classes=4), teacher=teacher,
        args=DistillationConfig(output_dir=str(tmp_path), method="kd", cls=1.0, div=1.0, save_strategy="no",
                                report_to=[], use_cpu=True),
        train_dataset=train, eval_dataset=evaluation, mixup=mixup)
    model = trainer.model.train()
    batch = collate_image_batch(train.__getitems__(list(range(8))))
    expected = mixup(batch, epoch=0)
    _, outputs = trainer.compute_loss(model, batch, return_outputs=True)
    assert torch.equal(teacher.seen[-1], expected["pixel_values"])
    assert not torch.equal(expected["pixel_values"], batch["pixel_values"])
    # the student's logits of this (training-mode) step, against the soft targets
    soft = F.cross_entropy(outputs["logits"].detach(), expected["labels"])
    assert outputs["terms"]["ce"].item() == pytest.approx(soft.item(), rel=1e-6)
    hard = F.cross_entropy(outputs["logits"].detach(), batch["labels"])
    assert abs(soft.item() - hard.item()) > 1e-3


def test_a_method_that_needs_class_indices_is_refused_with_mixup(tmp_path):
    train, evaluation = learnable_datasets(n_train=16, n_eval=8, with_index=True)
    mixup = KeyedMixup(DataArguments(dataset_name="x", mixup_alpha=0.2), num_classes=4, seed=0)
    with pytest.raises(IncompatibleSetupError, match="method 'dkd' needs class-index labels"):
        DistillationTrainer(model=create_model("resnet8", num_classes=4), teacher=create_model("resnet8", num_classes=4),
                            args=DistillationConfig(output_dir=str(tmp_path), method="dkd", report_to=[]),
                            train_dataset=train, eval_dataset=evaluation, mixup=mixup)


def test_randaugment_posterize_at_full_magnitude_gives_timms_black_image():
    """rand-m10: PosterizeIncreasing keeps 0 bits, which Pillow 13 refuses; hfkd keeps timm's (black) result."""
    from PIL import Image
    from timm.data.auto_augment import RandAugment

    steps = train_transform(DataArguments(dataset_name="x", auto_augment="rand-m10-inc1"), 32, MEAN, STD).transforms
    augment = next(s for s in steps if isinstance(s, RandAugment))
    op = next(op for op in augment.ops if op.name == "PosterizeIncreasing")
    op.prob = 1.0
    image = Image.fromarray(np.full((8, 8, 3), 200, np.uint8))
    assert np.asarray(op(image)).max() == 0
    op.magnitude = 5  # 4 - int(5 / 10 * 4) = 2 bits: 200 = 0b11001000 -> 0b11000000
    assert np.asarray(op(image)).max() == 192


def test_a_bad_policy_on_the_command_line_is_one_sentence_and_exit_2(tmp_path, capsys):
    from pathlib import Path

    from hfkd.train import main

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"
    code = main([str(recipe), "--output_dir", str(tmp_path / "out"), "--auto_augment", "rand-x9"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "auto_augment 'rand-x9' is not a timm policy" in err[0]
    assert not (tmp_path / "out").exists()
