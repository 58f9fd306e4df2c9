"""CIFAR MobileNetV2 / ShuffleNetV1 / ShuffleNetV2 against the numbers of spec sections 6.4-6.6."""

import pytest
import torch
from torch import nn

from hfkd.models import FeatureClassifier, list_zoo_models
from hfkd.models.cifar_shufflenetv1 import channel_shuffle
from hfkd.models.registry import zoo_entrypoint

NAMES = ["MobileNetV2", "MobileNetV2_1_0", "ShuffleV1", "ShuffleV2", "ShuffleV2_1_5"]

# spec: parameter count in millions (rounded to 3 decimals), state_dict key count, head key, feature shapes per sample
SPEC = {
    "MobileNetV2": (
        0.813,
        320,
        "classifier",
        [(16, 16, 16), (12, 16, 16), (16, 8, 8), (48, 4, 4), (160, 2, 2), (1280,)],
    ),
    "MobileNetV2_1_0": (
        2.353,
        320,
        "classifier",
        [(32, 16, 16), (24, 16, 16), (32, 8, 8), (96, 4, 4), (320, 2, 2), (1280,)],
    ),
    "ShuffleV1": (0.949, 296, "linear", [(24, 32, 32), (240, 16, 16), (480, 8, 8), (960, 4, 4), (960,)]),
    "ShuffleV2": (1.356, 338, "linear", [(24, 32, 32), (116, 16, 16), (232, 8, 8), (464, 4, 4), (1024,)]),
    "ShuffleV2_1_5": (2.581, 338, "linear", [(24, 32, 32), (176, 16, 16), (352, 8, 8), (704, 4, 4), (1024,)]),
}

SPOT_KEYS = {
    "MobileNetV2": {
        "conv1.0.weight": (16, 3, 3, 3),
        "conv1.1.running_mean": (16,),
        # first block has t = 1 but still all three convs
        "blocks.0.0.conv.0.weight": (16, 16, 1, 1),
        "blocks.0.0.conv.3.weight": (16, 1, 3, 3),
        "blocks.0.0.conv.6.weight": (8, 16, 1, 1),
        "blocks.0.0.conv.7.running_var": (8,),
        "blocks.1.0.conv.0.weight": (48, 8, 1, 1),
        "blocks.6.0.conv.6.weight": (160, 480, 1, 1),
        "conv2.0.weight": (1280, 160, 1, 1),
        "conv2.1.weight": (1280,),
        "classifier.0.weight": (100, 1280),
        "classifier.0.bias": (100,),
    },
    "MobileNetV2_1_0": {
        "blocks.0.0.conv.0.weight": (32, 32, 1, 1),
        "conv2.0.weight": (1280, 320, 1, 1),
        "classifier.0.weight": (100, 1280),
    },
    "ShuffleV1": {
        "conv1.weight": (24, 3, 1, 1),
        "bn1.running_var": (24,),
        "layer1.0.conv1.weight": (54, 24, 1, 1),
        "layer1.0.conv2.weight": (54, 1, 3, 3),
        "layer1.0.conv3.weight": (216, 18, 1, 1),
        "layer1.1.conv1.weight": (60, 80, 1, 1),
        "layer2.0.conv1.weight": (60, 80, 1, 1),
        "layer2.7.bn3.num_batches_tracked": (),
        "layer3.3.conv3.weight": (960, 80, 1, 1),
        "linear.weight": (100, 960),
    },
    "ShuffleV2": {
        "conv1.weight": (24, 3, 1, 1),
        "layer1.0.conv1.weight": (24, 1, 3, 3),
        "layer1.0.conv2.weight": (58, 24, 1, 1),
        "layer1.0.conv5.weight": (58, 58, 1, 1),
        "layer1.0.bn5.running_mean": (58,),
        "layer1.1.conv3.weight": (58, 58, 1, 1),
        "layer1.3.bn3.weight": (58,),
        "layer2.7.conv2.weight": (116, 1, 3, 3),
        "layer3.0.conv4.weight": (232, 1, 3, 3),
        "conv2.weight": (1024, 464, 1, 1),
        "bn2.running_var": (1024,),
        "linear.weight": (100, 1024),
    },
    "ShuffleV2_1_5": {
        "layer1.0.conv5.weight": (88, 88, 1, 1),
        "layer1.1.conv3.weight": (88, 88, 1, 1),
        "conv2.weight": (1024, 704, 1, 1),
        "bn2.running_var": (1024,),
        "linear.weight": (100, 1024),
    },
}


@pytest.fixture(scope="module")
def models() -> dict[str, FeatureClassifier]:
    torch.manual_seed(0)
    return {name: zoo_entrypoint(name)().eval() for name in NAMES}


@pytest.fixture(scope="module")
def outputs(models: dict[str, FeatureClassifier]) -> dict:
    torch.manual_seed(1)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        return {name: m(x, return_features=True) for name, m in models.items()}


def test_registered() -> None:
    assert set(NAMES) <= set(list_zoo_models())


@pytest.mark.parametrize("name", NAMES)
def test_param_and_key_counts(models: dict, name: str) -> None:
    params_m, n_keys, _, _ = SPEC[name]
    m = models[name]
    assert round(sum(p.numel() for p in m.parameters()) / 1e6, 3) == params_m
    assert len(m.state_dict()) == n_keys


@pytest.mark.parametrize("name", NAMES)
def test_key_spot_checks(models: dict, name: str) -> None:
    sd = models[name].state_dict()
    for key, shape in SPOT_KEYS[name].items():
        assert key in sd, key
        assert tuple(sd[key].shape) == shape, key


@pytest.mark.parametrize("name", NAMES)
def test_feature_shapes(outputs: dict, name: str) -> None:
    out = outputs[name]
    assert [tuple(f.shape) for f in out.feats] == [(2, *s) for s in SPEC[name][3]]
    assert tuple(out.logits.shape) == (2, 100)


@pytest.mark.parametrize("name", NAMES)
def test_head_and_pooled(models: dict, outputs: dict, name: str) -> None:
    m = models[name]
    head_key = SPEC[name][2]
    assert m.head_name == head_key
    assert m.classifier is getattr(m, head_key)
    assert m.num_classes == 100
    out = outputs[name]
    assert m.num_features == out.feats[-1].shape[1]
    with torch.no_grad():
        torch.testing.assert_close(m.classifier(out.feats[-1]), out.logits, rtol=0, atol=0)
    assert out.pooled is out.feats[-1]


@pytest.mark.parametrize("name", ["ShuffleV2", "ShuffleV2_1_5"])
def test_shufflev2_last_map_is_before_conv2(models: dict, outputs: dict, name: str) -> None:
    feats = outputs[name].feats
    assert feats[-2].shape[1] != feats[-1].shape[1]
    assert feats[-2].shape[1] == models[name].conv2.in_channels


def test_mobilenetv2_pooled_is_conv2_output(models: dict) -> None:
    m = models["MobileNetV2"]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = m.forward_feature_list(x)
        conv2_map = m.conv2(feats[-2])
    assert tuple(conv2_map.shape) == (2, 1280, 2, 2)
    torch.testing.assert_close(feats[-1], conv2_map.mean(dim=(2, 3)))


def test_forward_without_features_and_num_classes(models: dict) -> None:
    x = torch.randn(2, 3, 32, 32)
    for name in NAMES:
        m = zoo_entrypoint(name)(num_classes=10).eval()
        with torch.no_grad():
            out = m(x)
        assert out.feats is None
        assert tuple(out.logits.shape) == (2, 10)
        assert m.num_classes == 10


def test_state_dict_roundtrip_strict(models: dict) -> None:
    for name in NAMES:
        fresh = zoo_entrypoint(name)()
        fresh.load_state_dict(models[name].state_dict(), strict=True)


def test_constructors_are_silent(capsys: pytest.CaptureFixture) -> None:
    for name in ["MobileNetV2", "ShuffleV1", "ShuffleV2"]:
        zoo_entrypoint(name)()
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_mobilenetv2_init(models: dict) -> None:
    m = models["MobileNetV2"]
    # conv weights N(0, 2 / (k*k*C_out)): conv2 is 1x1 with 1280 outputs -> std sqrt(2/1280)
    w = m.conv2[0].weight
    assert abs(w.std().item() - (2 / 1280) ** 0.5) < 0.1 * (2 / 1280) ** 0.5
    dw = m.blocks[3][0].conv[3].weight  # 3x3 depthwise, 96 outputs -> std sqrt(2/(9*96))
    assert abs(dw.std().item() - (2 / (9 * 96)) ** 0.5) < 0.15 * (2 / (9 * 96)) ** 0.5
    lin = m.classifier[0]
    assert abs(lin.weight.std().item() - 0.01) < 0.001
    assert torch.count_nonzero(lin.bias) == 0
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            assert torch.all(mod.weight == 1) and torch.all(mod.bias == 0)
        if isinstance(mod, nn.Conv2d):
            assert mod.bias is None


def test_mobilenetv2_residual_rule(models: dict) -> None:
    m = models["MobileNetV2"]
    # residual only when stride 1 and widths match: block 0 (16 -> 8) has none, blocks[1][1] (12 -> 12) has one
    assert not m.blocks[0][0].use_residual
    assert not m.blocks[1][0].use_residual
    assert m.blocks[1][1].use_residual
    assert not m.blocks[2][0].use_residual  # stride 2
    assert m.blocks[4][0].use_residual is False  # 32 -> 48
    assert m.blocks[4][1].use_residual


def test_channel_shuffle() -> None:
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]
    assert channel_shuffle(x, 1).flatten().tolist() == [0, 1, 2, 3, 4, 5]


def test_shufflev1_concat_puts_shortcut_last(models: dict) -> None:
    m = models["ShuffleV1"]
    x = torch.randn(2, 24, 32, 32)
    with torch.no_grad():
        out = m.layer1[0](x)
    assert tuple(out.shape) == (2, 240, 16, 16)
    expected = torch.relu(nn.functional.avg_pool2d(x, 3, stride=2, padding=1))
    torch.testing.assert_close(out[:, 216:], expected)
