"""Loading SimKD / RepDistiller release checkpoints (``{'model': state_dict, ...}`` .pth files)."""

from __future__ import annotations

import argparse

import pytest
import torch

from hfkd.errors import ModelLoadError, UnreadableFileError
from hfkd.models import CheckpointInfo, create_model, infer_reference_arch, load_reference_checkpoint, provenance_of


def save_reference(folder, arch: str, name: str = "ckpt.pth", **extra) -> tuple:
    folder.mkdir(parents=True, exist_ok=True)
    model = create_model(arch, num_classes=100)
    path = folder / name
    torch.save({"epoch": 240, "model": model.state_dict(), "best_acc": torch.tensor(79.42), **extra}, path)
    return path, model


@pytest.mark.parametrize(
    "folder, arch",
    [
        ("resnet32x4_vanilla", "resnet32x4"),
        ("resnet8x4_vanilla", "resnet8x4"),
        ("wrn_40_2_vanilla", "wrn_40_2"),
        ("ShuffleV2_1_5_vanilla_cifar100_trial_0", "ShuffleV2_1_5"),  # the references resolve this to ShuffleV2
        ("MobileNetV2_1_0_vanilla", "MobileNetV2_1_0"),
        ("ResNet50_vanilla", "ResNet50"),
        ("S:resnet8x4_T:resnet32x4_cifar100_kd_r:1_a:1_b:0_1", "resnet8x4"),
        ("S~vgg8_T~resnet32x4_cifar100_simkd_r~0_a~0_b~1_1", "vgg8"),
        ("my_run", None),
    ],
)
def test_architecture_from_folder_name(tmp_path, folder, arch):
    assert infer_reference_arch(tmp_path / folder / "x.pth") == arch


def test_loads_reference_checkpoint_with_weights_only(tmp_path):
    path, original = save_reference(tmp_path / "resnet8x4_vanilla", "resnet8x4", "resnet8x4_best.pth")
    loaded = load_reference_checkpoint(path)
    assert not loaded.training
    assert provenance_of(loaded).checkpoint == CheckpointInfo("resnet8x4", 240, pytest.approx(79.42))
    x = torch.randn(2, 3, 32, 32)
    original.eval()
    assert torch.equal(loaded(x).logits, original(x).logits)
    # create_model takes the same path
    assert torch.equal(create_model(str(path))(x).logits, original(x).logits)


def test_explicit_arch_for_an_unnamed_folder(tmp_path):
    path, _ = save_reference(tmp_path / "downloads", "vgg8")
    with pytest.raises(ModelLoadError, match="cannot tell the architecture .* pass it explicitly"):
        load_reference_checkpoint(path)
    assert load_reference_checkpoint(path, arch="vgg8").num_classes == 100


def test_wrong_architecture_is_one_clear_error(tmp_path):
    path, _ = save_reference(tmp_path / "downloads", "resnet8x4")
    with pytest.raises(ModelLoadError, match="does not fit architecture 'resnet32x4'.*teacher_arch"):
        load_reference_checkpoint(path, arch="resnet32x4")


def test_pickled_namespace_needs_weights_only_alternative(tmp_path):
    # RepDistiller's *_last.pth stores the argparse Namespace next to the weights (spec 4.3)
    path, _ = save_reference(tmp_path / "resnet8x4_vanilla", "resnet8x4", "resnet8x4_last.pth",
                             opt=argparse.Namespace(lr=0.05))
    with pytest.raises(UnreadableFileError, match="stores Python objects besides tensors.* use the \\*_best.pth"):
        load_reference_checkpoint(path)


def test_simkd_student_checkpoint_is_refused(tmp_path):
    path, _ = save_reference(tmp_path / "S:resnet8x4_T:resnet32x4_cifar100_simkd_r:0_a:0_b:1_1", "resnet8x4",
                             proj={"transfer.0.weight": torch.zeros(1)})
    with pytest.raises(ModelLoadError, match="is a SimKD student"):
        load_reference_checkpoint(path)


def test_not_a_reference_file(tmp_path):
    path = tmp_path / "resnet8x4_vanilla" / "raw.pth"
    path.parent.mkdir()
    torch.save(create_model("resnet8x4").state_dict(), path)
    with pytest.raises(ModelLoadError, match="expected a dict with a 'model' state_dict"):
        load_reference_checkpoint(path)
    with pytest.raises(UnreadableFileError, match="does not exist"):
        load_reference_checkpoint(tmp_path / "missing" / "x.pth")
