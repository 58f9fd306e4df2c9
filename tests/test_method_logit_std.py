"""Logit standardisation (spec 10.2): KD on z-scored logits (unbiased std), and the same on top of ``kd``."""

from __future__ import annotations

import math

import pytest
import torch

from hfkd.distillation_model import LossWeights
from hfkd.errors import IncompatibleSetupError
from hfkd.methods import build_method
from hfkd.methods.kd import KD
from hfkd.methods.logit_std import LogitStandardization, standardize_logits
from hfkd.methods.spherical import spherical_logits

from tests.method_helpers import (
    LABELS,
    STUDENT,
    TEACHER,
    assert_falls,
    assert_only_fixed_student_learns,
    default_weights,
    hand_ce,
    hand_kd,
    hand_z,
    logs_after_training,
    method_config,
    run_with_logits,
    tiny_trainer,
)



def test_standardisation_uses_unbiased_std_unlike_spherical_layer_norm():
    row = [1.0, 2.0, 4.0]  # unbiased std sqrt(7/3), biased sqrt(14/9): they differ by sqrt(3/2)
    got = standardize_logits(torch.tensor([row]))[0]
    assert got.tolist() == pytest.approx(hand_z(row), rel=1e-5)
    ln = spherical_logits(torch.tensor([row]), 1.0)[0]
    assert torch.allclose(ln, got * math.sqrt(3 / 2), rtol=1e-4)
    assert not torch.allclose(ln, got, rtol=1e-2)


def test_standardisation_is_fp32_per_sample_and_shift_scale_free():
    z = torch.tensor(STUDENT)
    assert torch.allclose(standardize_logits(z), standardize_logits(z * 50 - 3), atol=1e-5)
    out = standardize_logits((z * 1000).half())
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.allclose(out.mean(1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(out.std(1), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("t", [1.0, 2.0, 4.0])
def test_total_loss_is_ce_on_raw_plus_kd_on_standardised_logits(t):
    _, out = run_with_logits(LogitStandardization(), LossWeights(cls=0.1, div=9.0, kd_temperature=t))
    ce = hand_ce(STUDENT, LABELS)
    kd = hand_kd([hand_z(r) for r in STUDENT], [hand_z(r) for r in TEACHER], t)
    assert set(out["terms"]) == {"ce", "kd"}
    assert out["terms"]["ce"].item() == pytest.approx(ce, rel=1e-5)
    assert out["terms"]["kd"].item() == pytest.approx(kd, rel=1e-5)
    assert out["loss"].item() == pytest.approx(0.1 * ce + 9.0 * kd, rel=1e-5)


def test_kd_with_logit_standardization_equals_logit_std(tmp_path):
    weights = LossWeights(cls=1.0, div=1.0, kd_temperature=2.0)
    kd_ls = build_method("kd", None, None, method_config(tmp_path, logit_standardization=True), None)
    ls = build_method("logit_std", None, None, method_config(tmp_path), None)
    assert isinstance(kd_ls, KD) and kd_ls.logit_standardization
    _, a = run_with_logits(kd_ls, weights)
    _, b = run_with_logits(ls, weights)
    assert a["loss"].item() == pytest.approx(b["loss"].item(), rel=1e-6)
    assert a["terms"]["kd"].item() == pytest.approx(b["terms"]["kd"].item(), rel=1e-6)
    # and plain kd stays on the raw logits
    plain = build_method("kd", None, None, method_config(tmp_path), None)
    assert not plain.logit_standardization
    _, c = run_with_logits(plain, weights)
    assert c["terms"]["kd"].item() == pytest.approx(hand_kd(STUDENT, TEACHER, 2.0), rel=1e-5)


def test_gradient_reaches_student_and_method_has_no_parameters():
    model, out = run_with_logits(LogitStandardization(), LossWeights(cls=0.0, div=1.0))
    assert_only_fixed_student_learns(model, out)
    assert default_weights("logit_std") == (1.0, 1.0, 0.0)


def test_end_to_end_run_lowers_the_kd_term(tmp_path):
    # KD alone (cls 0), so the student can only move towards the teacher's standardised distribution
    logs = logs_after_training(tiny_trainer(tmp_path, "logit_std", kd_temperature=2.0, cls=0.0), "kd")
    assert all("loss_ce" not in h for h in logs)
    assert_falls(logs, "loss_kd", count=2)


def test_class_count_mismatch_is_rejected_before_training(tmp_path):
    with pytest.raises(IncompatibleSetupError, match="the teacher predicts 10 classes but the student 4"):
        tiny_trainer(tmp_path, "logit_std", teacher_classes=10)
