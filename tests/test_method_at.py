"""AT (spec 2.3): attention maps with the mean over channels, zipped and aligned stage-map pairs, summed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfkd.methods import METHODS
from hfkd.methods.at import AT

from tests.method_helpers import (
    TWO_TOKEN_SEQUENCES,
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
    assert_needs_feature_maps("at", "student", "the stage maps feats[1:-1]", TWO_TOKEN_SEQUENCES)


def test_a_near_zero_map_is_divided_by_f_normalize_eps_not_by_its_norm():
    """Activations of about 1e-7: mean_c(f^2) is about 2e-14 per position and its L2 norm below F.normalize's eps
    (1e-12), so the map is divided by 1e-12 and its scale shows (the mean over C, not a sum or a mean over H)."""
    from hfkd.methods.at import attention_map

    g = torch.Generator().manual_seed(1)
    s = (torch.rand(2, 4, 2, 3, generator=g) + 1.0) * 1e-7  # C = 4, H = 2, W = 3
    t = torch.randn(2, 6, 2, 3, generator=g)

    def hand(f: np.ndarray) -> np.ndarray:
        rows = []
        for sample in f:
            a = np.array([sum(sample[c, y, x] ** 2 for c in range(f.shape[1])) / f.shape[1]
                          for y in range(f.shape[2]) for x in range(f.shape[3])])
            rows.append(a / max(np.sqrt((a**2).sum()), 1e-12))
        return np.stack(rows)

    expected_s = hand(numpy(s))
    assert np.sqrt((expected_s**2).sum(axis=1)).max() < 0.1  # clamped: far from unit rows
    np.testing.assert_allclose(numpy(attention_map(s)), expected_s, rtol=1e-5)
    loss = AT()(outputs([s, s, s.mean((2, 3))]), outputs([t, t, t.mean((2, 3))]), {})["at"]
    assert loss.item() == pytest.approx(float(((expected_s - hand(numpy(t))) ** 2).mean()), rel=1e-5)


def test_bf16_maps_give_an_fp32_loss_without_autocast():
    """A bf16 model (no autocast) hands AT bf16 maps: the channel norm accumulates and returns fp32, so the loss is
    the fp32 value of the bf16 maps."""
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(2, 3, 4, 4, generator=g).bfloat16(), torch.randn(2, 5, 4, 4, generator=g).bfloat16()
    loss = AT()(outputs([s, s, s.float().mean((2, 3))]), outputs([t, t, t.float().mean((2, 3))]), {})["at"]
    assert loss.dtype == torch.float32
    expected = ((hand_attention(numpy(s)) - hand_attention(numpy(t))) ** 2).mean()
    assert loss.item() == pytest.approx(float(expected), rel=1e-5)
