"""PKT (spec 3): cosine-similarity distributions of the pooled vectors, against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch

from hfkd.methods.pkt import pkt_loss

from tests.method_helpers import (
    assert_fp32_under_autocast,
    assert_only_term_trains,
    assert_term_goes_down,
    dot,
    logs_after_training,
    model_gradient_run,
    tiny_trainer,
)

EPS = 1e-7


def hand_distribution(rows):
    """Rows L2-normalised (eps added to the norm), (cos + 1) / 2, each row divided by its sum."""
    unit = []
    for row in rows:
        norm = math.sqrt(dot(row, row))
        unit.append([v / (norm + EPS) for v in row])
    sim = [[(dot(u, w) + 1.0) / 2.0 for w in unit] for u in unit]
    return [[v / sum(row) for v in row] for row in sim]


def hand_pkt(f_s, f_t):
    p_s, p_t = hand_distribution(f_s), hand_distribution(f_t)
    terms = [pt * math.log((pt + EPS) / (ps + EPS)) for rs, rt in zip(p_s, p_t) for ps, pt in zip(rs, rt)]
    return sum(terms) / len(terms)


F_S = [[1.0, 2.0, 0.0], [0.5, -1.0, 3.0], [0.0, 0.0, 0.0], [2.0, 1.0, 1.0]]  # a zero row: normalised to 0
F_T = [[0.3, 0.1], [2.0, -0.5], [1.0, 1.0], [-1.0, 0.2]]


def test_pkt_matches_the_formula():
    loss = pkt_loss(torch.tensor(F_S), torch.tensor(F_T))
    assert loss.shape == () and loss.item() == pytest.approx(hand_pkt(F_S, F_T), rel=1e-5)
    assert pkt_loss(torch.tensor(F_T), torch.tensor(F_T)).item() == pytest.approx(0.0, abs=1e-7)


def test_nan_rows_are_set_to_zero():
    with_inf = [[float("inf"), 1.0], [1.0, 2.0], [0.5, -0.5]]  # inf / inf = NaN after normalisation -> 0
    cleaned = [[0.0, 0.0], [1.0, 2.0], [0.5, -0.5]]
    loss = pkt_loss(torch.tensor(with_inf), torch.tensor(F_T[:3]))
    assert math.isfinite(loss.item())
    # the NaN entry becomes 0 while the row's finite entry becomes 1/inf = 0: the same as a zero row
    assert loss.item() == pytest.approx(hand_pkt(cleaned, F_T[:3]), rel=1e-5)


def test_fp32_under_bf16_autocast():
    f_s, f_t = torch.tensor(F_S).bfloat16(), torch.tensor(F_T).bfloat16()
    assert_fp32_under_autocast(pkt_loss, hand_pkt(f_s.float().tolist(), f_t.float().tolist()), f_s, f_t)


def test_gradients_reach_the_student_only():
    student, teacher, method, out = model_gradient_run("pkt")
    assert sum(p.numel() for p in method.parameters()) == 0  # no trainable modules
    assert_only_term_trains(student, teacher, method, out, "pkt")


def test_pkt_trains_end_to_end(tmp_path):
    trainer = tiny_trainer(tmp_path, "pkt")
    assert trainer.model.weights.beta == 30000 and trainer.model.weights.cls == 1 and trainer.model.weights.div == 1
    assert_term_goes_down(trainer, logs_after_training(trainer, "pkt"), "pkt", count=2)


def test_a_row_as_short_as_eps_is_halved_not_blown_up():
    # the reference adds eps to the norm: a row of norm 1e-7 becomes half a unit vector (norm - eps would divide by 0)
    tiny = [[1e-7, 0.0, 0.0], [0.5, -1.0, 3.0], [2.0, 1.0, 1.0]]
    loss = pkt_loss(torch.tensor(tiny, dtype=torch.float64), torch.tensor(F_T[:3], dtype=torch.float64))
    assert loss.item() == pytest.approx(hand_pkt(tiny, F_T[:3]), rel=1e-5)
