"""RKD (spec 3): distance and angle relations of the pooled vectors, against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch

from hfkd.methods.rkd import rkd_loss

from tests.method_helpers import (
    assert_fp32_under_autocast,
    assert_only_term_trains,
    assert_term_goes_down,
    dot,
    logs_after_training,
    model_gradient_run,
    tiny_trainer,
    unit,
)


def smooth_l1(a, b):
    terms = [0.5 * (x - y) ** 2 if abs(x - y) < 1 else abs(x - y) - 0.5 for x, y in zip(a, b)]
    return sum(terms) / len(terms)


def hand_distances(rows):
    """Distances from squared distances clamped at 1e-12, diagonal 0, over the mean of the positive entries."""
    n = len(rows)
    d = [[0.0 if i == j else math.sqrt(max(sum((a - b) ** 2 for a, b in zip(rows[i], rows[j])), 1e-12))
          for j in range(n)] for i in range(n)]
    positive = [v for row in d for v in row if v > 0]
    mean = sum(positive) / len(positive)
    return [v / mean for row in d for v in row]


def hand_angles(rows):
    n = len(rows)
    out = []
    for i in range(n):
        for j in range(n):
            for k in range(n):
                e_ij = unit([a - b for a, b in zip(rows[j], rows[i])])
                e_ik = unit([a - b for a, b in zip(rows[k], rows[i])])
                out.append(dot(e_ij, e_ik))
    return out


def hand_rkd(f_s, f_t):
    distance = smooth_l1(hand_distances(f_s), hand_distances(f_t))
    angle = smooth_l1(hand_angles(f_s), hand_angles(f_t))
    return 25 * distance + 50 * angle


F_S = [[1.0, 2.0, 0.0], [0.5, -1.0, 3.0], [0.0, 0.1, 0.0], [2.0, 1.0, 1.0]]
F_T = [[0.3, 0.1], [2.0, -0.5], [1.0, 1.0], [-1.0, 0.2]]


def test_rkd_matches_the_formula():
    loss = rkd_loss(torch.tensor(F_S), torch.tensor(F_T))
    assert loss.shape == () and loss.item() == pytest.approx(hand_rkd(F_S, F_T), rel=1e-5)
    # scale-free: a scaled copy of the teacher costs nothing
    assert rkd_loss(torch.tensor(F_T) * 3.0, torch.tensor(F_T)).item() == pytest.approx(0.0, abs=1e-5)


def test_identical_rows_and_a_single_example():
    rows = [[1.0, 1.0], [1.0, 1.0], [0.0, 2.0]]  # equal rows: distance sqrt(1e-12) > 0, so it counts
    assert rkd_loss(torch.tensor(rows), torch.tensor(F_T[:3])).item() == pytest.approx(
        hand_rkd(rows, F_T[:3]), rel=1e-5
    )
    assert rkd_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 0.0]])).item() == 0.0  # reference: NaN


def test_fp32_under_bf16_autocast():
    f_s, f_t = torch.tensor(F_S).bfloat16(), torch.tensor(F_T).bfloat16()
    assert_fp32_under_autocast(rkd_loss, hand_rkd(f_s.float().tolist(), f_t.float().tolist()), f_s, f_t)


def test_gradients_reach_the_student_only():
    student, teacher, method, out = model_gradient_run("rkd")
    assert sum(p.numel() for p in method.parameters()) == 0  # no trainable modules
    assert_only_term_trains(student, teacher, method, out, "rkd")


def test_rkd_trains_end_to_end(tmp_path):
    trainer = tiny_trainer(tmp_path, "rkd")
    assert (trainer.model.weights.cls, trainer.model.weights.div, trainer.model.weights.beta) == (1, 1, 1)
    assert_term_goes_down(trainer, logs_after_training(trainer, "rkd"), "rkd", count=2)
