"""Spherical KD (spec 10.1): CE and KD on LN(z) * m, checked against the formula written out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from hfkd.distillation_model import DistillationModel, LossWeights
from hfkd.errors import IncompatibleSetupError, RecipeError
from hfkd.methods import build_method
from hfkd.methods.spherical import SphericalKD, spherical_logits

from tests.method_helpers import (
    LABELS,
    STUDENT,
    TEACHER,
    FixedStudent,
    assert_falls,
    assert_only_fixed_student_learns,
    default_weights,
    hand_ce,
    hand_kd,
    logs_after_training,
    method_config,
    run_with_logits,
    tiny_trainer,
)



def hand_ln(row, m):
    """(z - mean) / sqrt(biased var + 1e-7) * m, with the 1/C variance."""
    mean = sum(row) / len(row)
    var = sum((v - mean) ** 2 for v in row) / len(row)
    return [(v - mean) / math.sqrt(var + 1e-7) * m for v in row]


def test_layer_norm_uses_biased_variance():
    row = [1.0, 2.0, 4.0]  # biased var 14/9, unbiased 7/3: the two normalisations differ by sqrt(3/2)
    got = spherical_logits(torch.tensor([row]), 2.0)[0].tolist()
    assert got == pytest.approx(hand_ln(row, 2.0), rel=1e-5)
    mean = sum(row) / 3
    unbiased = [(v - mean) / math.sqrt(sum((x - mean) ** 2 for x in row) / 2) * 2.0 for v in row]
    assert got != pytest.approx(unbiased, rel=1e-3)


@pytest.mark.parametrize("m", [1.0, 2.0, 3.0])
def test_total_loss_is_cls_ce_plus_div_kd_on_normalised_logits(m):
    _, out = run_with_logits(SphericalKD(m), LossWeights(cls=0.1, div=0.9, beta=0.0, kd_temperature=4.0))
    ln_s = [hand_ln(r, m) for r in STUDENT]
    ln_t = [hand_ln(r, m) for r in TEACHER]
    ce, kd = hand_ce(ln_s, LABELS), hand_kd(ln_s, ln_t, 4.0)
    assert set(out["terms"]) == {"ce", "kd"}
    assert out["terms"]["ce"].item() == pytest.approx(ce, rel=1e-5)
    assert out["terms"]["kd"].item() == pytest.approx(kd, rel=1e-5)
    assert out["loss"].item() == pytest.approx(0.1 * ce + 0.9 * kd, rel=1e-5)
    # differs from plain KD on the raw logits
    assert out["terms"]["ce"].item() != pytest.approx(hand_ce(STUDENT, LABELS), rel=1e-3)


def test_normalisation_is_fp32_and_scale_free():
    z = torch.tensor(STUDENT) * 1000
    half = spherical_logits(z.half(), 2.0)
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    assert torch.allclose(spherical_logits(z, 2.0), spherical_logits(z / 1000 + 7.0, 2.0), atol=1e-4)


def test_gradient_reaches_student_and_method_has_no_parameters():
    model, out = run_with_logits(SphericalKD(2.0), LossWeights(cls=1.0, div=1.0))
    assert_only_fixed_student_learns(model, out)


def test_prediction_is_the_students_own_logits_with_the_same_argmax():
    model = DistillationModel(FixedStudent(STUDENT), SphericalKD(2.0), LossWeights()).eval()
    logits = model(torch.zeros(3, 3, 4, 4))["logits"]
    assert torch.equal(logits, torch.tensor(STUDENT))
    assert torch.equal(spherical_logits(logits, 2.0).argmax(1), logits.argmax(1))


def test_build_reads_config_and_defaults(tmp_path):
    method = build_method("spherical", None, None, method_config(tmp_path, spherical_multiplier=3.0), None)
    assert isinstance(method, SphericalKD) and method.multiplier == 3.0
    assert default_weights("spherical") == (1.0, 1.0, 0.0)
    with pytest.raises(RecipeError, match="spherical_multiplier must be > 0"):
        build_method("spherical", None, None, method_config(tmp_path, spherical_multiplier=0), None)


def test_end_to_end_run_lowers_the_loss(tmp_path):
    logs = logs_after_training(tiny_trainer(tmp_path, "spherical"), "kd")
    assert_falls(logs, "loss", count=2)
    for log in logs:
        assert log["loss"] == pytest.approx(log["loss_ce"] + log["loss_kd"], rel=1e-4)


def test_class_count_mismatch_is_rejected_before_training(tmp_path):
    with pytest.raises(IncompatibleSetupError, match="the teacher predicts 10 classes but the student 4"):
        tiny_trainer(tmp_path, "spherical", teacher_classes=10)


def test_the_imagenet_alpha_schedule_sets_cls_and_div_per_epoch(tmp_path):
    """alpha 0.9 in epochs 1-60, 0.5 in 61-80, 0.1 from 81: loss = (1 - alpha) * CE + alpha * KD."""
    from hfkd.distillation_model import resolve_loss_weights

    config = method_config(tmp_path, method="spherical", spherical_alphas=[0.9, 0.5, 0.1],
                           spherical_alpha_epochs=[60, 80])
    weights = resolve_loss_weights(config)
    assert (weights.cls, weights.div) == pytest.approx((0.1, 0.9))
    method = build_method("spherical", None, None, config, None)
    ln_s, ln_t = [hand_ln(r, 2.0) for r in STUDENT], [hand_ln(r, 2.0) for r in TEACHER]
    ce, kd = hand_ce(ln_s, LABELS), hand_kd(ln_s, ln_t, 4.0)
    for epoch, alpha in ((1, 0.9), (60, 0.9), (61, 0.5), (80, 0.5), (81, 0.1), (100, 0.1)):
        _, out = run_with_logits(method, weights, epoch=epoch)
        assert out["loss"].item() == pytest.approx((1 - alpha) * ce + alpha * kd, rel=1e-5), epoch
    with pytest.raises(RecipeError, match="leave cls and div unset"):
        resolve_loss_weights(method_config(tmp_path, method="spherical", cls=0.1, spherical_alphas=[0.9]))
    with pytest.raises(RecipeError, match="needs one value more than spherical_alpha_epochs"):
        build_method("spherical", None, None, method_config(tmp_path, spherical_alphas=[0.9, 0.5],
                                                            spherical_alpha_epochs=[60, 80]), None)


def test_the_layer_norm_epsilon_is_1e_7_where_the_variance_is_that_small():
    # variance 1.875e-7: torch's default eps 1e-5 would dominate it
    row = [0.0, 1e-3, 0.0, 0.0]
    got = spherical_logits(torch.tensor([row], dtype=torch.float64), 1.0)[0].tolist()
    assert got == pytest.approx(hand_ln(row, 1.0), rel=1e-4)


def test_the_paper_multiplier_is_the_default():
    assert SphericalKD().multiplier == 2.0 and SphericalKD().alphas is None


@pytest.mark.parametrize(("values", "sentence"), [
    (dict(spherical_alpha_epochs=[60]), "spherical_alpha_epochs needs spherical_alphas (one alpha more than epochs)"),
    (dict(spherical_alphas=[0.9], spherical_alpha_epochs=[60]),
     "spherical_alphas needs one value more than spherical_alpha_epochs, got [0.9] and [60]"),
    (dict(spherical_alphas=[0.9, 1.5], spherical_alpha_epochs=[60]),
     "spherical_alphas must lie in [0, 1] and spherical_alpha_epochs increase, got [0.9, 1.5] and [60]"),
    (dict(spherical_alphas=[-0.1, 0.5], spherical_alpha_epochs=[60]),
     "spherical_alphas must lie in [0, 1] and spherical_alpha_epochs increase, got [-0.1, 0.5] and [60]"),
    (dict(spherical_alphas=[0.9, 0.5, 0.1], spherical_alpha_epochs=[80, 60]),
     "spherical_alphas must lie in [0, 1] and spherical_alpha_epochs increase, got [0.9, 0.5, 0.1] and [80, 60]"),
    (dict(spherical_alphas=[0.9], cls=0.5),
     "spherical_alphas sets cls = 1 - alpha and div = alpha each epoch; leave cls and div unset"),
    (dict(spherical_alphas=[0.9], div=0.5),
     "spherical_alphas sets cls = 1 - alpha and div = alpha each epoch; leave cls and div unset"),
])
def test_a_bad_alpha_schedule_is_refused_in_one_sentence(tmp_path, values, sentence):
    from types import SimpleNamespace

    config = SimpleNamespace(spherical_multiplier=2.0, **{"spherical_alphas": None, "cls": None, "div": None, **values})
    for check in (lambda: SphericalKD.default_weights(config), lambda: SphericalKD.build(None, None, config, None)):
        with pytest.raises(RecipeError) as refused:
            check()
        assert str(refused.value) == sentence


def test_alphas_0_and_1_are_allowed_and_set_cls_and_div_with_beta_0():
    config = method_config(None, method="spherical", spherical_alphas=[1.0, 0.0], spherical_alpha_epochs=[3])
    assert SphericalKD.default_weights(config) == (0.0, 1.0, 0.0)
    method = SphericalKD.build(None, None, config, None)
    assert (method.alphas, method.alpha_epochs) == ([1.0, 0.0], [3])
    assert [method.alpha_at(e) for e in (1, 3, 4)] == [1.0, 1.0, 0.0]


def test_a_config_without_the_schedule_settings_builds_with_the_class_defaults():
    from types import SimpleNamespace

    config = SimpleNamespace(spherical_multiplier=3.0)  # only what build needs
    method = SphericalKD.build(None, None, config, None)
    assert (method.multiplier, method.alphas, method.alpha_epochs) == (3.0, None, [])
    assert SphericalKD.default_weights(config) == (1.0, 1.0, 0.0)
    scheduled = SimpleNamespace(spherical_multiplier=3.0, spherical_alphas=[0.9])  # no cls / div / epochs either
    assert SphericalKD.default_weights(scheduled) == pytest.approx((0.1, 0.9, 0.0))
    assert SphericalKD.build(None, None, scheduled, None).alphas == [0.9]
