"""CIFAR zoo: ResNet / WRN / VGG / ResNet50 against the reference spec (reference-methods.md sections 6.1-6.3, 6.7)."""

import ast
import functools
from pathlib import Path

import pytest
import torch
from torch import nn

from hfkd.models import ClassifierOutput, FeatureClassifier
from hfkd.models.registry import list_zoo_models, zoo_entrypoint

MODELS_DIR = Path(__file__).resolve().parents[1] / "hfkd" / "models"
OUR_FILES = ["cifar_resnet.py", "cifar_wrn.py", "cifar_resnet50.py", "cifar_vgg.py", "reference_init.py"]

RESNET_NAMES = [
    "resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "resnet8x4", "resnet32x4",
    "resnet38", "resnet14x2", "resnet38x2", "resnet110x2", "resnet14x4", "resnet38x4",
]  # fmt: skip
WRN_NAMES = ["wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2"]
VGG_NAMES = ["vgg8", "vgg11", "vgg13", "vgg16", "vgg19"]
ALL_NAMES = RESNET_NAMES + WRN_NAMES + VGG_NAMES + ["ResNet50"]

HEAD_NAME = {n: "fc" for n in RESNET_NAMES + WRN_NAMES}
HEAD_NAME.update({n: "classifier" for n in VGG_NAMES}, ResNet50="linear")

# parameter counts (millions, 3 decimals) stated by the spec, num_classes=100
SPEC_PARAMS_M = {
    "resnet8x4": 1.234,
    "resnet32x4": 7.434,
    "vgg8": 3.965,
    "vgg13": 9.462,
    "wrn_40_2": 2.255,
    "wrn_16_2": 0.703,
    "wrn_40_1": 0.570,
    "wrn_16_1": 0.181,
    "ResNet50": 23.705,
    "resnet14x2": 0.704,
    "resnet38x2": 2.256,
    "resnet110x2": 6.911,
    "resnet38": 0.570,
}

# number of state_dict entries stated by the spec
SPEC_KEYS = {
    "resnet8x4": 62,
    "resnet32x4": 206,
    "vgg8": 37,
    "vgg13": 72,
    "wrn_40_2": 227,
    "wrn_16_2": 83,
    "ResNet50": 320,
}

# per-sample feature shapes for a [2, 3, 32, 32] input: spec tables, plus the plain ResNets derived from 6.1
R_X4 = [(32, 32, 32), (64, 32, 32), (128, 16, 16), (256, 8, 8), (256,)]
R_PLAIN = [(16, 32, 32), (16, 32, 32), (32, 16, 16), (64, 8, 8), (64,)]
VGG_32 = [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 4, 4), (512,)]
FEATURE_SHAPES = {
    "resnet8x4": R_X4,
    "resnet32x4": R_X4,
    "resnet20": R_PLAIN,
    "resnet56": R_PLAIN,
    "vgg8": VGG_32,
    "vgg13": VGG_32,
    "wrn_40_2": [(16, 32, 32), (32, 32, 32), (64, 16, 16), (128, 8, 8), (128,)],
    "ResNet50": [(64, 32, 32), (256, 32, 32), (512, 16, 16), (1024, 8, 8), (2048, 4, 4), (2048,)],
}

BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@functools.lru_cache(maxsize=None)
def build(name: str) -> FeatureClassifier:
    """Each model is built once per test session (seeded, eval mode)."""
    torch.manual_seed(0)
    return zoo_entrypoint(name)(num_classes=100).eval()


@functools.lru_cache(maxsize=None)
def run(name: str) -> tuple[torch.Tensor, ClassifierOutput]:
    """One forward with features on a fixed [2, 3, 32, 32] batch, cached."""
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return x, build(name)(x, return_features=True)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def bn_keys(prefix: str) -> list[str]:
    return [f"{prefix}.{s}" for s in BN_SUFFIXES]


# --------------------------------------------------------------------------- registry / contract


def test_all_names_registered() -> None:
    assert set(ALL_NAMES) <= set(list_zoo_models())


@pytest.mark.parametrize("name", ALL_NAMES)
def test_constructor_contract(name: str, capsys: pytest.CaptureFixture) -> None:
    model = build(name)
    assert capsys.readouterr().out == ""  # constructors print nothing
    assert isinstance(model, FeatureClassifier)
    assert model.head_name == HEAD_NAME[name]
    assert model.classifier is getattr(model, HEAD_NAME[name])
    assert isinstance(model.classifier, nn.Linear)
    assert model.num_classes == 100


def test_num_classes_kwarg() -> None:
    for name in ["resnet8", "wrn_16_1", "vgg8"]:
        model = zoo_entrypoint(name)(num_classes=10).eval()
        assert model.num_classes == 10
        with torch.no_grad():
            out = model(torch.randn(2, 3, 32, 32))
        assert out.logits.shape == (2, 10)
        assert out.feats is None


def test_files_import_only_torch_and_sibling_modules() -> None:
    """These files get copied next to an exported model as trust_remote_code modules."""
    for fname in OUR_FILES:
        tree = ast.parse((MODELS_DIR / fname).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name == "torch" or alias.name.startswith("torch."), (fname, alias.name)
            elif isinstance(node, ast.ImportFrom):
                if node.level == 0:
                    assert node.module == "torch" or node.module.startswith("torch."), (fname, node.module)
                else:
                    assert node.level == 1 and node.module in {"feature_classifier", "registry", "reference_init"}, (fname, node.module)


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("name", sorted(SPEC_PARAMS_M))
def test_param_count_matches_spec(name: str) -> None:
    assert round(n_params(build(name)) / 1e6, 3) == SPEC_PARAMS_M[name]


@pytest.mark.parametrize("name", sorted(SPEC_KEYS))
def test_state_dict_key_count_matches_spec(name: str) -> None:
    assert len(build(name).state_dict()) == SPEC_KEYS[name]


def test_report_param_counts() -> None:
    """Counts the spec does not state: printed for the record (run with -s to see them)."""
    for name in ["vgg11", "vgg16", "vgg19", "resnet14", "resnet44", "resnet110", "resnet14x4", "resnet38x4"]:
        model = build(name)
        count = n_params(model)
        print(f"{name}: {count} params ({count / 1e6:.3f} M), {len(model.state_dict())} state_dict keys")
        assert count > 0


# --------------------------------------------------------------------------- key names


def _cifar_resnet_keys(depth: int, filters: list[int]) -> set[str]:
    """Expected state_dict keys by the rule of spec 6.1."""
    n = (depth - 2) // 6
    keys = {"conv1.weight", *bn_keys("bn1"), "fc.weight", "fc.bias"}
    in_planes = filters[0]
    for s, (planes, stride) in enumerate(zip(filters[1:], [1, 2, 2]), start=1):
        for j in range(n):
            p = f"layer{s}.{j}"
            keys |= {f"{p}.conv1.weight", f"{p}.conv2.weight", *bn_keys(f"{p}.bn1"), *bn_keys(f"{p}.bn2")}
        if stride != 1 or in_planes != planes:
            keys |= {f"layer{s}.0.downsample.0.weight", *bn_keys(f"layer{s}.0.downsample.1")}
        in_planes = planes
    return keys


@pytest.mark.parametrize(
    ("name", "depth", "filters"),
    [("resnet8x4", 8, [32, 64, 128, 256]), ("resnet32x4", 32, [32, 64, 128, 256]), ("resnet20", 20, [16, 16, 32, 64])],
)
def test_cifar_resnet_keys(name: str, depth: int, filters: list[int]) -> None:
    assert set(build(name).state_dict()) == _cifar_resnet_keys(depth, filters)


def test_cifar_resnet_downsample_spots() -> None:
    sd = build("resnet8x4").state_dict()
    assert sd["layer1.0.downsample.0.weight"].shape == (64, 32, 1, 1)  # 32 -> 64 at stride 1
    assert sd["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert "layer1.0.downsample.1.running_mean" in sd
    assert sd["fc.weight"].shape == (100, 256)
    plain = build("resnet56").state_dict()
    assert not any(k.startswith("layer1.0.downsample") for k in plain)  # 16 -> 16 at stride 1
    assert "layer2.0.downsample.0.weight" in plain and "layer3.0.downsample.0.weight" in plain
    assert "layer1.8.conv2.weight" in plain and "layer1.9.conv1.weight" not in plain  # 9 blocks per stage


def _wrn_keys(depth: int, k: int) -> set[str]:
    """Expected state_dict keys by the rule of spec 6.2."""
    n = (depth - 4) // 6
    chans = [16, 16 * k, 32 * k, 64 * k]
    keys = {"conv1.weight", *bn_keys("bn1"), "fc.weight", "fc.bias"}
    for g in range(1, 4):
        for j in range(n):
            p = f"block{g}.layer.{j}"
            keys |= {f"{p}.conv1.weight", f"{p}.conv2.weight", *bn_keys(f"{p}.bn1"), *bn_keys(f"{p}.bn2")}
            if j == 0 and chans[g - 1] != chans[g]:
                keys.add(f"{p}.convShortcut.weight")
    return keys


@pytest.mark.parametrize(("name", "depth", "k"), [("wrn_40_2", 40, 2), ("wrn_16_2", 16, 2), ("wrn_40_1", 40, 1)])
def test_wrn_keys(name: str, depth: int, k: int) -> None:
    sd = build(name).state_dict()
    assert set(sd) == _wrn_keys(depth, k)
    if k == 1:
        assert "block1.layer.0.convShortcut.weight" not in sd
    else:
        assert sd["block1.layer.0.convShortcut.weight"].shape == (16 * k, 16, 1, 1)
    for g in (2, 3):
        assert f"block{g}.layer.0.convShortcut.weight" in sd
        assert f"block{g}.layer.1.convShortcut.weight" not in sd
    assert sd["bn1.weight"].shape == (64 * k,)


def test_resnet50_keys() -> None:
    sd = build("ResNet50").state_dict()
    assert "linear.weight" in sd and "linear.bias" in sd and "fc.weight" not in sd
    assert sd["linear.weight"].shape == (100, 2048)
    assert sd["conv1.weight"].shape == (64, 3, 3, 3)  # 3x3 CIFAR stem, not the 7x7 ImageNet one
    for s in range(1, 5):
        assert f"layer{s}.0.shortcut.0.weight" in sd
        assert f"layer{s}.0.shortcut.1.running_mean" in sd
        assert f"layer{s}.1.shortcut.0.weight" not in sd
        assert not any("downsample" in k for k in sd)
    assert sd["layer1.0.shortcut.0.weight"].shape == (256, 64, 1, 1)
    assert sd["layer3.5.conv3.weight"].shape == (1024, 256, 1, 1) and "layer3.6.conv1.weight" not in sd


def test_vgg8_keys() -> None:
    sd = build("vgg8").state_dict()
    expected = {"classifier.weight", "classifier.bias"}
    for b in range(5):
        expected |= {f"block{b}.0.weight", f"block{b}.0.bias", *bn_keys(f"block{b}.1")}
    assert set(sd) == expected
    assert sd["block0.0.weight"].shape == (64, 3, 3, 3)
    assert "block0.1.running_mean" in sd
    assert sd["classifier.weight"].shape == (100, 512)


def test_vgg13_keys() -> None:
    sd = build("vgg13").state_dict()
    expected = {"classifier.weight", "classifier.bias"}
    for b in range(5):
        for conv, bn in ((0, 1), (3, 4)):
            expected |= {f"block{b}.{conv}.weight", f"block{b}.{conv}.bias", *bn_keys(f"block{b}.{bn}")}
    assert set(sd) == expected
    assert sd["block2.3.weight"].shape == (256, 256, 3, 3)
    # the trailing ReLU of each block is dropped: block b has exactly 5 modules (conv, BN, ReLU, conv, BN)
    model = build("vgg13")
    for b in range(5):
        block = getattr(model, f"block{b}")
        assert len(block) == 5 and isinstance(block[-1], nn.BatchNorm2d)


# --------------------------------------------------------------------------- features


@pytest.mark.parametrize("name", sorted(FEATURE_SHAPES))
def test_feature_shapes(name: str) -> None:
    _, out = run(name)
    assert [tuple(f.shape) for f in out.feats] == [(2, *s) for s in FEATURE_SHAPES[name]]


@pytest.mark.parametrize("name", sorted(FEATURE_SHAPES))
def test_classifier_consumes_pooled(name: str) -> None:
    x, out = run(name)
    model = build(name)
    assert out.logits.shape == (2, 100)
    assert out.pooled is out.feats[-1]
    assert model.num_features == out.feats[-1].shape[1]
    with torch.no_grad():
        assert torch.equal(model.classifier(out.feats[-1]), out.logits)
        if n_params(model) < 2e6:  # a second forward only for the small models (keeps the file fast)
            plain = model(x)
            assert plain.feats is None
            assert torch.equal(plain.logits, out.logits)


@pytest.mark.parametrize("name", ["resnet8x4", "resnet20", "vgg8", "vgg13", "ResNet50"])
def test_post_relu_features_and_average_pool(name: str) -> None:
    _, out = run(name)
    for f in out.feats[:-1]:
        assert f.min() >= 0
    torch.testing.assert_close(out.feats[-1], out.feats[-2].mean(dim=(2, 3)))


def test_wrn_raw_features() -> None:
    """f0 is the raw conv1 output and f1..f3 raw residual sums (can be negative); pooled = avgpool(relu(bn1(f3)))."""
    _, out = run("wrn_40_2")
    model = build("wrn_40_2")
    for f in out.feats[:-1]:
        assert f.min() < 0
    with torch.no_grad():
        torch.testing.assert_close(out.feats[0], model.conv1(run("wrn_40_2")[0]))
        expected = torch.relu(model.bn1(out.feats[3])).mean(dim=(2, 3))
    torch.testing.assert_close(out.feats[-1], expected)


def test_vgg_pool3_only_for_64_high_inputs() -> None:
    """pool3 sits between f3 and block4, and runs only when the input height is 64 (spec 6.3)."""
    model = build("vgg8")
    with torch.no_grad():
        f64 = model(torch.randn(2, 3, 64, 64), return_features=True).feats
        f48 = model(torch.randn(2, 3, 48, 48), return_features=True).feats
    shapes64 = [(64, 64, 64), (128, 32, 32), (256, 16, 16), (512, 8, 8), (512, 4, 4), (512,)]
    assert [tuple(f.shape[1:]) for f in f64] == shapes64
    # any other height: no pool3, so f3 and f4 have the same size
    shapes48 = [(64, 48, 48), (128, 24, 24), (256, 12, 12), (512, 6, 6), (512, 6, 6), (512,)]
    assert [tuple(f.shape[1:]) for f in f48] == shapes48


# --------------------------------------------------------------------------- init conventions


def _assert_std(w: torch.Tensor, std: float, rel: float = 0.03) -> None:
    assert abs(w.float().std().item() - std) < rel * std, (w.std().item(), std)


def test_init_vgg() -> None:
    model = build("vgg8")
    conv = model.block3[0]  # 512 x 256 x 3 x 3
    _assert_std(conv.weight, (2.0 / (9 * 512)) ** 0.5)
    assert torch.all(conv.bias == 0)
    bn = model.block3[1]
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    _assert_std(model.classifier.weight, 0.01, rel=0.05)
    assert torch.all(model.classifier.bias == 0)


def test_init_wrn() -> None:
    model = build("wrn_40_2")
    _assert_std(model.block3.layer[1].conv1.weight, (2.0 / (9 * 128)) ** 0.5)
    _assert_std(model.block3.layer[0].convShortcut.weight, (2.0 / 128) ** 0.5, rel=0.1)
    assert torch.all(model.fc.bias == 0)
    assert model.fc.weight.abs().max() <= 128**-0.5  # PyTorch default (uniform) weight
    assert torch.all(model.bn1.weight == 1) and torch.all(model.bn1.bias == 0)


def test_init_resnets() -> None:
    model = build("resnet32x4")
    _assert_std(model.layer3[1].conv1.weight, (2.0 / (9 * 256)) ** 0.5)  # kaiming normal, fan_out
    assert model.fc.weight.abs().max() <= 256**-0.5 and model.fc.bias.abs().max() <= 256**-0.5  # default Linear
    r50 = build("ResNet50")
    _assert_std(r50.layer4[0].conv2.weight, (2.0 / (9 * 512)) ** 0.5)
    assert all(torch.all(block.bn3.weight == 1) for block in r50.layer4)  # no zero-init of the residual BN
