"""DIST (spec 10.4): inter- and intra-class Pearson relations of softmax(z / tau), computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from hfkd.distillation_model import LossWeights
from hfkd.errors import IncompatibleSetupError
from hfkd.methods import build_method
from hfkd.methods.dist import DIST
from hfkd.models import ClassifierOutput

from tests.method_helpers import (
    assert_falls,
    assert_only_fixed_student_learns,
    default_weights,
    hand_ce,
    logs_after_training,
    method_config,
    run_with_logits,
    softmax,
    tiny_trainer,
)

# the 2x3 example (B = 2, C = 3) and a 4x3 one where the intra-class correlation is not just +-1
STUDENT_2x3 = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
TEACHER_2x3 = [[2.0, 1.0, -1.0], [1.0, 3.0, 2.5]]
STUDENT_4x3 = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [2.0, 2.0, -2.0], [0.3, 0.1, 0.2]]
TEACHER_4x3 = [[2.0, 1.0, -1.0], [1.0, 0.0, 2.5], [3.0, 0.0, -1.0], [-1.0, 0.5, 0.0]]
LABELS_4 = [1, 2, 0, 1]


def pearson(a, b, eps=1e-8):
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    da, db = [x - ma for x in a], [x - mb for x in b]
    num = sum(x * y for x, y in zip(da, db))
    return num / (math.sqrt(sum(x * x for x in da)) * math.sqrt(sum(y * y for y in db)) + eps)


def hand_dist(student, teacher, beta, gamma, tau):
    p_s = [softmax(r, tau) for r in student]
    p_t = [softmax(r, tau) for r in teacher]
    n_b, n_c = len(p_s), len(p_s[0])
    inter = 1 - sum(pearson(p_s[b], p_t[b]) for b in range(n_b)) / n_b
    intra = 1 - sum(pearson([p_s[b][c] for b in range(n_b)], [p_t[b][c] for b in range(n_b)]) for c in range(n_c)) / n_c
    return tau * tau * (beta * inter + gamma * intra), inter, intra


def dist_term(method, student, teacher):
    out = method(ClassifierOutput(logits=torch.tensor(student)), ClassifierOutput(logits=torch.tensor(teacher)), {})
    assert set(out) == {"dist"}
    return out["dist"]


@pytest.mark.parametrize("tau", [1.0, 4.0])
@pytest.mark.parametrize(("student", "teacher"), [(STUDENT_2x3, TEACHER_2x3), (STUDENT_4x3, TEACHER_4x3)])
def test_dist_matches_hand_computation(student, teacher, tau):
    expected, _, _ = hand_dist(student, teacher, 2.0, 3.0, tau)
    assert dist_term(DIST(beta=2.0, gamma=3.0, temperature=tau), student, teacher).item() == pytest.approx(
        expected, rel=1e-5
    )


def test_inter_and_intra_terms_separately():
    _, inter, intra = hand_dist(STUDENT_4x3, TEACHER_4x3, 1.0, 1.0, 4.0)
    assert 0.0 < intra and 0.0 < inter
    assert dist_term(DIST(1.0, 0.0, 4.0), STUDENT_4x3, TEACHER_4x3).item() == pytest.approx(16 * inter, rel=1e-5)
    assert dist_term(DIST(0.0, 1.0, 4.0), STUDENT_4x3, TEACHER_4x3).item() == pytest.approx(16 * intra, rel=1e-5)
    # with B = 2 each per-class correlation over the batch is +-1: here classes 0 and 2 move the same way in
    # student and teacher and class 1 the opposite way, so intra = 1 - (1 - 1 + 1) / 3 = 2/3
    _, _, intra_2 = hand_dist(STUDENT_2x3, TEACHER_2x3, 1.0, 1.0, 1.0)
    assert intra_2 == pytest.approx(2 / 3, abs=1e-6)
    assert dist_term(DIST(0.0, 1.0, 1.0), STUDENT_2x3, TEACHER_2x3).item() == pytest.approx(2 / 3, rel=1e-5)


def test_identical_logits_give_almost_zero_and_half_precision_is_upcast():
    # not exactly 0: the eps 1e-8 in the denominator is not negligible for the flat tau = 4 probabilities
    expected, _, _ = hand_dist(STUDENT_4x3, STUDENT_4x3, 2.0, 2.0, 4.0)
    assert 0.0 < expected < 1e-3
    assert dist_term(DIST(), STUDENT_4x3, STUDENT_4x3).item() == pytest.approx(expected, abs=2e-5)
    logits = torch.tensor(STUDENT_4x3) * 1000
    value = DIST(temperature=1.0)(ClassifierOutput(logits=logits.half()), ClassifierOutput(logits=logits.half()), {})
    assert value["dist"].dtype == torch.float32 and torch.isfinite(value["dist"])


def test_build_reads_config_and_defaults(tmp_path):
    args = method_config(tmp_path, dist_beta=1.0, dist_gamma=0.5, kd_temperature=1.0)
    method = build_method("dist", None, None, args, None)
    assert (method.beta, method.gamma, method.temperature) == (1.0, 0.5, 1.0)
    assert default_weights("dist") == (1.0, 0.0, 1.0)


def test_total_loss_with_default_weights_and_gradients():
    weights = LossWeights(cls=1.0, div=0.0, beta=1.0)
    model, out = run_with_logits(DIST(), weights, STUDENT_4x3, TEACHER_4x3, LABELS_4)
    ce = hand_ce(STUDENT_4x3, LABELS_4)
    expected, _, _ = hand_dist(STUDENT_4x3, TEACHER_4x3, 2.0, 2.0, 4.0)
    assert set(out["terms"]) == {"ce", "dist"}
    assert out["loss"].item() == pytest.approx(ce + expected, rel=1e-5)
    assert_only_fixed_student_learns(model, out)


def test_end_to_end_run_lowers_the_dist_term(tmp_path):
    logs = logs_after_training(tiny_trainer(tmp_path, "dist", cls=0.0), "dist")
    assert all("loss_ce" not in h for h in logs)
    assert_falls(logs, "loss_dist", count=2)


def test_class_count_mismatch_is_rejected_before_training(tmp_path):
    with pytest.raises(IncompatibleSetupError, match="the teacher predicts 10 classes but the student 4"):
        tiny_trainer(tmp_path, "dist", teacher_classes=10)
