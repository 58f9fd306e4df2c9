"""DKD (spec 10.3): TCKD + NCKD written out with explicit loops, the warm-up, and DKD on standardised logits."""

from __future__ import annotations

import pytest
import torch

from hfkd.distillation_model import LossWeights
from hfkd.errors import IncompatibleSetupError
from hfkd.methods import build_method
from hfkd.methods.dkd import DKD
from hfkd.models import ClassifierOutput

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
    kl,
    logs_after_training,
    method_config,
    run_with_logits,
    softmax,
    tiny_trainer,
)



def hand_tckd_nckd(student, teacher, labels, t):
    """Summed KLs times T^2 / B: TCKD on [p_y, 1 - p_y]; NCKD on the softmax over the classes other than y."""
    tckd = nckd = 0.0
    for s_row, t_row, y in zip(student, teacher, labels):
        p_s, p_t = softmax(s_row, t), softmax(t_row, t)
        tckd += kl([p_t[y], 1 - p_t[y]], [p_s[y], 1 - p_s[y]])
        others = [k for k in range(len(s_row)) if k != y]
        nckd += kl(softmax([t_row[k] for k in others], t), softmax([s_row[k] for k in others], t))
    scale = t * t / len(student)
    return tckd * scale, nckd * scale


def dkd_term(method, student=STUDENT, teacher=TEACHER, labels=LABELS, epoch=100):
    batch = {"labels": torch.tensor(labels), "epoch": epoch}
    out = method(ClassifierOutput(logits=torch.tensor(student)), ClassifierOutput(logits=torch.tensor(teacher)), batch)
    assert set(out) == {"dkd"}
    return out["dkd"]


@pytest.mark.parametrize("t", [1.0, 4.0])
def test_dkd_matches_hand_tckd_and_nckd(t):
    tckd, nckd = hand_tckd_nckd(STUDENT, TEACHER, LABELS, t)
    value = dkd_term(DKD(alpha=1.5, beta=8.0, temperature=t, warmup_epochs=20))
    assert value.item() == pytest.approx(1.5 * tckd + 8.0 * nckd, rel=1e-5)
    assert dkd_term(DKD(alpha=1.0, beta=0.0, temperature=t)).item() == pytest.approx(tckd, rel=1e-5)
    assert dkd_term(DKD(alpha=0.0, beta=1.0, temperature=t)).item() == pytest.approx(nckd, rel=1e-5)


def test_kd_decomposes_into_tckd_plus_teacher_weighted_nckd():
    """The paper's identity for one sample: KD = TCKD + (1 - p_t[y]) * NCKD."""
    s, te, y, t = STUDENT[2], TEACHER[2], LABELS[2], 4.0
    kd = hand_kd([s], [te], t)
    tckd = dkd_term(DKD(1.0, 0.0, t), [s], [te], [y]).item()
    nckd = dkd_term(DKD(0.0, 1.0, t), [s], [te], [y]).item()
    assert kd == pytest.approx(tckd + (1 - softmax(te, t)[y]) * nckd, rel=1e-5)


@pytest.mark.parametrize(("epoch", "factor"), [(1, 0.05), (10, 0.5), (20, 1.0), (30, 1.0)])
def test_warmup_factor(epoch, factor):
    tckd, nckd = hand_tckd_nckd(STUDENT, TEACHER, LABELS, 4.0)
    value = dkd_term(DKD(alpha=1.0, beta=8.0, temperature=4.0, warmup_epochs=20), epoch=epoch)
    assert value.item() == pytest.approx(factor * (tckd + 8.0 * nckd), rel=1e-5)


def test_logit_standardization_applies_to_the_dkd_logits():
    std_s, std_t = [hand_z(r) for r in STUDENT], [hand_z(r) for r in TEACHER]
    tckd, nckd = hand_tckd_nckd(std_s, std_t, LABELS, 2.0)
    value = dkd_term(DKD(alpha=1.0, beta=8.0, temperature=2.0, logit_standardization=True))
    assert value.item() == pytest.approx(tckd + 8.0 * nckd, rel=1e-5)


def test_build_reads_config_and_defaults(tmp_path):
    args = method_config(
        tmp_path, dkd_alpha=2.0, dkd_beta=3.0, dkd_warmup_epochs=5, kd_temperature=2.0, logit_standardization=True
    )
    method = build_method("dkd", None, None, args, None)
    assert (method.alpha, method.beta, method.warmup_epochs, method.temperature) == (2.0, 3.0, 5, 2.0)
    assert method.logit_standardization
    assert default_weights("dkd") == (1.0, 0.0, 1.0)


def test_total_loss_with_default_weights_and_gradients():
    model, out = run_with_logits(DKD(), LossWeights(cls=1.0, div=0.0, beta=1.0), epoch=10)
    tckd, nckd = hand_tckd_nckd(STUDENT, TEACHER, LABELS, 4.0)
    ce = hand_ce(STUDENT, LABELS)
    assert set(out["terms"]) == {"ce", "dkd"}
    assert out["loss"].item() == pytest.approx(ce + 0.5 * (tckd + 8 * nckd), rel=1e-5)
    assert_only_fixed_student_learns(model, out)


def test_confident_and_half_precision_logits_stay_finite():
    # the target probability underflows in fp32 at T = 1: log of the concatenated probabilities would be -inf
    student = torch.tensor([[-200.0, 100.0, 0.0, 1.0]], requires_grad=True)
    teacher = torch.tensor([[150.0, -100.0, 0.0, 2.0]])
    batch = {"labels": torch.tensor([0]), "epoch": 30}
    value = DKD(temperature=1.0)(ClassifierOutput(logits=student), ClassifierOutput(logits=teacher), batch)["dkd"]
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(student.grad).all()
    half = DKD()(ClassifierOutput(logits=student.detach().half() * 100), ClassifierOutput(logits=teacher.half()), batch)
    assert half["dkd"].dtype == torch.float32 and torch.isfinite(half["dkd"])


def test_end_to_end_run_lowers_the_dkd_term(tmp_path):
    # DKD alone and no warm-up, so the logged term is comparable across epochs
    logs = logs_after_training(tiny_trainer(tmp_path, "dkd", cls=0.0, dkd_warmup_epochs=0), "dkd")
    assert all("loss_ce" not in h and "loss_kd" not in h for h in logs)
    assert_falls(logs, "loss_dkd", count=2)


def test_class_count_mismatch_is_rejected_before_training(tmp_path):
    with pytest.raises(IncompatibleSetupError, match="the teacher predicts 10 classes but the student 4"):
        tiny_trainer(tmp_path, "dkd", teacher_classes=10)


def test_no_warmup_means_the_full_term_from_the_first_epoch():
    from hfkd.methods.dkd import dkd_warmup_factor

    tckd, nckd = hand_tckd_nckd(STUDENT, TEACHER, LABELS, 4.0)
    value = dkd_term(DKD(alpha=1.0, beta=8.0, temperature=4.0, warmup_epochs=0), epoch=1)
    assert value.item() == pytest.approx(tckd + 8.0 * nckd, rel=1e-5)
    assert [dkd_warmup_factor(e, 0) for e in (1, 5)] == [1.0, 1.0]
    assert [dkd_warmup_factor(e, 4) for e in (1, 2, 4, 9)] == [0.25, 0.5, 1.0, 1.0]


@pytest.mark.parametrize("standardize", [False, True])
def test_the_div_terms_logits_are_standardised_exactly_when_asked(standardize):
    from hfkd.methods.components.logit_transforms import standardize_logits

    s, t = torch.tensor(STUDENT), torch.tensor(TEACHER)
    got_s, got_t = DKD(logit_standardization=standardize).kd_logits(s, t)
    want_s, want_t = (standardize_logits(s), standardize_logits(t)) if standardize else (s, t)
    assert torch.equal(got_s, want_s) and torch.equal(got_t, want_t)
    assert not torch.equal(standardize_logits(s), s)
