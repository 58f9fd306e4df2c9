"""FitNet (spec 2.2): SimKD's ConvReg cases, the loss against a hand computation, gradients, training, set-up errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hfkd.errors import IncompatibleSetupError, RecipeError
from hfkd.methods import METHODS, build_method
from hfkd.methods.fitnet import ConvReg, FitNet

from tests.method_helpers import (
    assert_gradients,
    assert_needs_feature_maps,
    assert_term_goes_down,
    block_mean,
    default_weights,
    gradient_run,
    make_method,
    method_config,
    numpy,
    outputs,
    ShapeModel,
    train_and_logs,
    zoo_model,
)


# ---- defaults -------------------------------------------------------------------------------------------------


def test_fitnet_defaults():
    assert FitNet.name == "fitnet" and METHODS["fitnet"] is FitNet
    assert default_weights("fitnet") == (1.0, 1.0, 100.0)
    assert FitNet.needs_student_features and FitNet.needs_teacher_features


# ---- the four ConvReg cases -----------------------------------------------------------------------------------


def build_fitnet(student_name: str, teacher_name: str, hint_layer: int = 1) -> FitNet:
    return make_method("fitnet", zoo_model(student_name), zoo_model(teacher_name), hint_layer=hint_layer)


def test_vgg8_from_resnet32x4_at_layer1_uses_the_transposed_conv():
    method = build_fitnet("vgg8", "resnet32x4")  # (128,16,16) -> (64,32,32)
    conv = method.regressor.conv
    assert isinstance(conv, nn.ConvTranspose2d)
    assert (conv.in_channels, conv.out_channels) == (128, 64)
    assert conv.kernel_size == (4, 4) and conv.stride == (2, 2) and conv.padding == (1, 1)
    assert conv.bias is not None
    out, target = method.regressor(torch.randn(2, 128, 16, 16), torch.randn(2, 64, 32, 32))
    assert out.shape == target.shape == (2, 64, 32, 32)


def test_resnet8x4_from_resnet32x4_at_layer1_is_a_1x1_conv():
    method = build_fitnet("resnet8x4", "resnet32x4")  # (64,32,32) -> (64,32,32)
    conv = method.regressor.conv
    assert type(conv) is nn.Conv2d and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
    assert (conv.in_channels, conv.out_channels) == (64, 64) and conv.bias is not None
    assert isinstance(method.regressor.bn, nn.BatchNorm2d) and method.regressor.bn.num_features == 64
    # 64*64 + 64 (conv) + 2*64 (BN affine)
    assert sum(p.numel() for p in method.parameters()) == 4288
    assert sorted(method.state_dict()) == sorted(
        ["regressor.conv.weight", "regressor.conv.bias"]
        + [f"regressor.bn.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    )


def test_student_twice_the_teacher_height_uses_a_strided_3x3_conv():
    reg = ConvReg((8, 8, 8), (4, 4, 4))
    assert reg.conv.kernel_size == (3, 3) and reg.conv.stride == (2, 2) and reg.conv.padding == (1, 1)
    out, target = reg(torch.randn(2, 8, 8, 8), torch.randn(2, 4, 4, 4))
    assert out.shape == target.shape == (2, 4, 4, 4)
    # the same case from zoo models: resnet8x4 layer 2 (128,16,16) against vgg8 layer 2 (256,8,8)
    assert build_fitnet("resnet8x4", "vgg8", hint_layer=2).regressor.conv.stride == (2, 2)


def test_larger_student_not_double_uses_a_valid_conv():
    reg = ConvReg((8, 12, 12), (4, 8, 8))
    assert reg.conv.kernel_size == (5, 5) and reg.conv.padding == (0, 0)
    out, target = reg(torch.randn(2, 8, 12, 12), torch.randn(2, 4, 8, 8))
    assert out.shape == target.shape == (2, 4, 8, 8)


def test_smaller_student_not_half_pools_the_teacher():
    """SimKD's extra case: a 3x3 stride-1 conv and the teacher pooled to the student's size.

    With a zero conv weight and bias 0.3 the conv output is constant, BN (batch statistics) maps it to 0 and the
    ReLU keeps 0, so the loss is the mean square of the 3x3 block means of the teacher, computed here by hand.
    """
    reg = ConvReg((2, 2, 2), (3, 6, 6))
    assert reg.pools_teacher
    assert reg.conv.kernel_size == (3, 3) and reg.conv.stride == (1, 1) and reg.conv.padding == (1, 1)
    method = FitNet(1, (2, 2, 2), (3, 6, 6)).train()
    with torch.no_grad():
        method.regressor.conv.weight.zero_()
        method.regressor.conv.bias.fill_(0.3)
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(2, 2, 2, 2, generator=g), torch.randn(2, 3, 6, 6, generator=g)
    loss = method(outputs([s, s, s.mean((2, 3))]), outputs([t, t, t.mean((2, 3))]), {})["fitnet"]
    pooled = block_mean(numpy(t), 2)
    assert loss.item() == pytest.approx(float((pooled**2).mean()), rel=1e-5)


# ---- loss value against a hand computation ------------------------------------------------------------------


def test_fitnet_loss_matches_conv_bn_relu_mse_by_hand():
    """1x1 conv, BatchNorm with batch statistics (biased variance, eps 1e-5), ReLU, then the element mean of squares."""
    g = torch.Generator().manual_seed(0)
    method = FitNet(1, (2, 3, 3), (3, 3, 3)).train()
    with torch.no_grad():
        method.regressor.conv.weight.copy_(torch.randn(3, 2, 1, 1, generator=g))
        method.regressor.conv.bias.copy_(torch.randn(3, generator=g))
        method.regressor.bn.weight.copy_(torch.tensor([1.0, 0.5, 2.0]))
        method.regressor.bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    s, t = torch.randn(2, 2, 3, 3, generator=g), torch.rand(2, 3, 3, 3, generator=g)
    stem = torch.zeros(2, 1, 3, 3)
    loss = method(outputs([stem, s, s.mean((2, 3))]), outputs([stem, t, t.mean((2, 3))]), {})["fitnet"]

    w, b = numpy(method.regressor.conv.weight)[:, :, 0, 0], numpy(method.regressor.conv.bias)
    gamma, beta = [1.0, 0.5, 2.0], [0.1, -0.2, 0.3]
    sn, tn = numpy(s), numpy(t)
    total, count = 0.0, 0
    for o in range(3):
        y = np.array([[[sum(w[o, c] * sn[n, c, h, x] for c in range(2)) + b[o] for x in range(3)] for h in range(3)]
                      for n in range(2)])
        mean, var = y.mean(), ((y - y.mean()) ** 2).mean()
        z = np.maximum(gamma[o] * (y - mean) / np.sqrt(var + 1e-5) + beta[o], 0.0)
        total += ((z - tn[:, o]) ** 2).sum()
        count += z.size
    assert loss.item() == pytest.approx(total / count, rel=1e-5)


# ---- gradients, training ------------------------------------------------------------------------------------


def test_fitnet_gradients_reach_student_and_regressor_not_teacher():
    student, teacher, method, _ = gradient_run("fitnet")
    assert_gradients(student, teacher, method)
    # the hint is feats[1] (layer1): later stages and the classifier get no gradient from this loss
    assert student.fc.weight.grad is None and student.layer3[0].conv1.weight.grad is None


def test_fitnet_trains_and_its_term_goes_down(tmp_path):
    trainer, logs = train_and_logs(tmp_path, "fitnet")
    assert_term_goes_down(trainer, logs, "fitnet")


# ---- set-up errors ------------------------------------------------------------------------------------------


def test_hint_layer_must_index_a_map_of_both_models():
    # resnet8x4 and resnet32x4 have maps feats[0..3]; feats[4] is the pooled vector
    with pytest.raises(IncompatibleSetupError, match=r"hint_layer .* set hint_layer to one of 0\.\.3$"):
        build_fitnet("resnet8x4", "resnet32x4", hint_layer=4)
    # a negative index is refused with the recipe's ranges (hfkd/recipe_ranges.py), before any model is built
    with pytest.raises(RecipeError, match=r"^hint_layer must be an integer >= 0, got -1$"):
        build_fitnet("resnet8x4", "resnet32x4", hint_layer=-1)


def test_hint_layer_range_is_that_of_the_shorter_list():
    # vgg8 has maps feats[0..4], resnet32x4 feats[0..3]
    with pytest.raises(IncompatibleSetupError, match=r"student has maps 0\.\.4, the teacher 0\.\.3"):
        build_fitnet("vgg8", "resnet32x4", hint_layer=4)
    assert isinstance(build_fitnet("vgg8", "resnet32x4", hint_layer=3), FitNet)


def test_fitnet_needs_feature_maps():
    assert_needs_feature_maps("fitnet", "teacher", "the hint feats[1]")


def test_fitnet_rejects_maps_it_cannot_regress_onto_each_other():
    # H_s == 2 H_t picks the stride-2 conv, but the widths (4 vs 4) would come out 2 against 4
    student, teacher = ShapeModel([(3, 8, 8), (8, 8, 4), (8,)]), ShapeModel([(3, 8, 8), (8, 4, 4), (8,)])
    message = r"^fitnet cannot regress the student hint feats\[1\] of shape \(8, 8, 4\) onto the teacher's \(8, 4, 4\)"
    with pytest.raises(IncompatibleSetupError, match=message):
        make_method("fitnet", student, teacher, {"pixel_values": torch.randn(2, 3, 8, 8)})
    # a valid conv cannot shrink a narrower student map either (kernel width 1 + 4 - 6 < 1)
    student, teacher = ShapeModel([(3, 8, 8), (8, 9, 4), (8,)]), ShapeModel([(3, 8, 8), (8, 6, 6), (8,)])
    with pytest.raises(IncompatibleSetupError, match=r"^fitnet cannot regress"):
        make_method("fitnet", student, teacher, {"pixel_values": torch.randn(2, 3, 8, 8)})


def test_fitnet_builds_without_an_example_batch_from_the_declared_input_size():
    method = build_method("fitnet", zoo_model("vgg8"), zoo_model("resnet32x4"), method_config(), None)
    assert isinstance(method.regressor.conv, nn.ConvTranspose2d)


def test_hint_layer_0_is_the_stem_map():
    # feats[0] of resnet8x4 and resnet32x4 is the stem's (32, 32, 32) map: equal sizes, a 1x1 conv 32 -> 32
    method = build_fitnet("resnet8x4", "resnet32x4", hint_layer=0)
    assert method.hint_layer == 0
    conv = method.regressor.conv
    assert type(conv) is nn.Conv2d and conv.kernel_size == (1, 1)
    assert (conv.in_channels, conv.out_channels) == (32, 32)


def test_fitnet_refuses_a_token_student_in_one_sentence():
    assert_needs_feature_maps("fitnet", "student", "the hint feats[1]")
