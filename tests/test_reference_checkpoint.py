"""Loading SimKD / RepDistiller release checkpoints (``{'model': state_dict, ...}`` .pth files)."""

from __future__ import annotations

import argparse

import pytest
import torch
import torch.nn.functional as F

from hfkd.errors import ModelLoadError, UnreadableFileError
from hfkd.models import CheckpointInfo, create_model, infer_reference_arch, load_reference_checkpoint, provenance_of


def bn_keys(prefix: str, channels: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.weight": torch.rand(channels, generator=g) + 0.5, f"{prefix}.bias": torch.randn(channels, generator=g),
        f"{prefix}.running_mean": torch.randn(channels, generator=g) * 0.1,
        f"{prefix}.running_var": torch.rand(channels, generator=g) + 0.5,
        f"{prefix}.num_batches_tracked": torch.tensor(1000),
    }


def conv(shape, g: torch.Generator) -> torch.Tensor:
    fan_in = shape[1] * shape[2] * shape[3]
    return torch.randn(*shape, generator=g) * (2.0 / fan_in) ** 0.5


def released_state_dict(arch: str, num_classes: int = 100, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under the released checkpoints' key names and shapes, written from the spec (section 6.1
    resnet8x4: 62 keys; 6.3 vgg8: 37 keys), not from hfkd's models."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    if arch == "resnet8x4":  # filters [32, 64, 128, 256], one BasicBlock per stage, a downsample in every stage
        state["conv1.weight"] = conv((32, 3, 3, 3), g)
        state.update(bn_keys("bn1", 32, g))
        for stage, (c_in, c_out) in enumerate([(32, 64), (64, 128), (128, 256)], start=1):
            block = f"layer{stage}.0"
            state[f"{block}.conv1.weight"] = conv((c_out, c_in, 3, 3), g)
            state.update(bn_keys(f"{block}.bn1", c_out, g))
            state[f"{block}.conv2.weight"] = conv((c_out, c_out, 3, 3), g)
            state.update(bn_keys(f"{block}.bn2", c_out, g))
            state[f"{block}.downsample.0.weight"] = conv((c_out, c_in, 1, 1), g)
            state.update(bn_keys(f"{block}.downsample.1", c_out, g))
        state["fc.weight"], state["fc.bias"] = torch.randn(num_classes, 256, generator=g) * 0.05, torch.zeros(num_classes)
        assert len(state) == 62
    elif arch == "vgg8":  # cfg S: one [conv (bias), BN] per block, channels 64, 128, 256, 512, 512
        for b, (c_in, c_out) in enumerate([(3, 64), (64, 128), (128, 256), (256, 512), (512, 512)]):
            state[f"block{b}.0.weight"], state[f"block{b}.0.bias"] = conv((c_out, c_in, 3, 3), g), torch.zeros(c_out)
            state.update(bn_keys(f"block{b}.1", c_out, g))
        state["classifier.weight"] = torch.randn(num_classes, 512, generator=g) * 0.01
        state["classifier.bias"] = torch.zeros(num_classes)
        assert len(state) == 37
    else:
        raise ValueError(arch)
    return state


def resnet8x4_reference_forward(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The spec's section 6.1 forward in eval mode, written with torch.nn.functional: stem conv-BN-ReLU; per stage a
    BasicBlock (conv3x3 stride s, BN, ReLU, conv3x3, BN, plus the 1x1-conv-BN downsample, ReLU); pool; fc."""

    def bn(h, prefix):
        return F.batch_norm(h, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"],
                            state[f"{prefix}.weight"], state[f"{prefix}.bias"], training=False, eps=1e-5)

    h = F.relu(bn(F.conv2d(x, state["conv1.weight"], padding=1), "bn1"))
    for stage, stride in ((1, 1), (2, 2), (3, 2)):
        block = f"layer{stage}.0"
        out = F.relu(bn(F.conv2d(h, state[f"{block}.conv1.weight"], stride=stride, padding=1), f"{block}.bn1"))
        out = bn(F.conv2d(out, state[f"{block}.conv2.weight"], padding=1), f"{block}.bn2")
        shortcut = bn(F.conv2d(h, state[f"{block}.downsample.0.weight"], stride=stride), f"{block}.downsample.1")
        h = F.relu(out + shortcut)
    return F.linear(h.mean((2, 3)), state["fc.weight"], state["fc.bias"])


def save_reference(folder, arch: str, name: str = "ckpt.pth", **extra):
    """A release-style ``{'epoch', 'model', 'best_acc'}`` file (spec 4.3) holding ``released_state_dict(arch)``."""
    folder.mkdir(parents=True, exist_ok=True)
    state = released_state_dict(arch)
    path = folder / name
    torch.save({"epoch": 240, "model": state, "best_acc": torch.tensor(79.42), **extra}, path)
    return path, state


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
    path, state = save_reference(tmp_path / "resnet8x4_vanilla", "resnet8x4", "resnet8x4_best.pth")
    loaded = load_reference_checkpoint(path)
    assert not loaded.training
    assert provenance_of(loaded).checkpoint == CheckpointInfo("resnet8x4", 240, pytest.approx(79.42))
    x = torch.randn(2, 3, 32, 32)
    expected = resnet8x4_reference_forward(state, x)
    assert torch.allclose(loaded(x).logits, expected, atol=1e-5, rtol=1e-4)
    # create_model takes the same path
    assert torch.allclose(create_model(str(path))(x).logits, expected, atol=1e-5, rtol=1e-4)


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
    torch.save(released_state_dict("resnet8x4"), path)
    with pytest.raises(ModelLoadError, match="expected a dict with a 'model' state_dict"):
        load_reference_checkpoint(path)
    with pytest.raises(UnreadableFileError, match="does not exist"):
        load_reference_checkpoint(tmp_path / "missing" / "x.pth")
