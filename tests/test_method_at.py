"""AT (spec 2.3): attention maps with the mean over channels, zipped and aligned stage-map pairs, summed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfkd.methods import METHODS
from hfkd.methods.at import AT

from tests.method_helpers import (
    assert_gradients,
    assert_needs_feature_maps,
    assert_term_goes_down,
    block_mean,
    default_weights,
    gradient_run,
    numpy,
    outputs,
    train_and_logs,
)


def hand_attention(f: np.ndarray) -> np.ndarray:
    """Per sample: mean over channels of f^2, flattened, divided by its L2 norm."""
    rows = []
    for sample in f:
        a = (sample**2).mean(axis=0).reshape(-1)
        rows.append(a / np.sqrt((a**2).sum()))
    return np.stack(rows)


def test_at_defaults():
    assert METHODS["at"] is AT
    assert default_weights("at") == (1.0, 1.0, 1000.0)
    assert not list(AT().parameters())


def test_at_loss_matches_hand_computation_with_zip_and_pooling():
    g = torch.Generator().manual_seed(0)
    # student: 2 stage maps; teacher: 3 stage maps -> 2 pairs (zip); pair 1 pools the teacher 8x8 -> 4x4,
    # pair 2 pools the student 4x4 -> 2x2
    s1, s2 = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 6, 4, 4, generator=g)
    t1, t2, t3 = (torch.randn(2, 5, 8, 8, generator=g), torch.randn(2, 4, 2, 2, generator=g),
                  torch.randn(2, 7, 1, 1, generator=g))
    stem = torch.randn(2, 3, 8, 8, generator=g)
    loss = AT()(outputs([stem, s1, s2, s2.mean((2, 3))]), outputs([stem, t1, t2, t3, t3.mean((2, 3))]), {})["at"]

    pairs = [(numpy(s1), block_mean(numpy(t1), 4)), (block_mean(numpy(s2), 2), numpy(t2))]
    expected = sum(((hand_attention(s) - hand_attention(t)) ** 2).mean() for s, t in pairs)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_at_gradients_reach_the_student_not_the_teacher():
    student, teacher, method, loss = gradient_run("at", student_name="vgg8", teacher_name="resnet8x4")
    assert loss.item() > 0
    # vgg8 has 4 stage maps, resnet8x4 3: the zip uses 3 pairs
    assert_gradients(student, teacher, method)


def test_at_trains_and_its_term_goes_down(tmp_path):
    trainer, logs = train_and_logs(tmp_path, "at")
    assert_term_goes_down(trainer, logs, "at")


def test_at_needs_feature_maps():
    assert_needs_feature_maps("at", "student", r"^at needs the stage maps feats\[1:-1\] of the student to be ")
