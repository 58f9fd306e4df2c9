"""SP (spec 2.4): the batch Gram matrix of the last stage map, row-normalised, squared Frobenius distance / B^2."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfkd.methods import METHODS
from hfkd.methods.sp import SP

from tests.method_helpers import (
    assert_gradients,
    assert_map_method_fp32_under_autocast,
    assert_needs_feature_maps,
    assert_term_goes_down,
    default_weights,
    gradient_run,
    make_method,
    numpy,
    outputs,
    ShapeModel,
    train_and_logs,
    zoo_model,
)


def hand_gram(f: np.ndarray) -> np.ndarray:
    """G[i, j] = <f_i, f_j> over the flattened map, then each row divided by its L2 norm."""
    flat = f.reshape(f.shape[0], -1)
    b = flat.shape[0]
    g = np.array([[sum(flat[i, k] * flat[j, k] for k in range(flat.shape[1])) for j in range(b)] for i in range(b)])
    return np.stack([row / np.sqrt((row**2).sum()) for row in g])


def test_sp_defaults():
    assert METHODS["sp"] is SP
    assert default_weights("sp") == (1.0, 1.0, 3000.0)
    assert not list(SP().parameters())


def test_sp_loss_matches_hand_computation():
    g = torch.Generator().manual_seed(1)
    # only feats[-2] is read; student and teacher maps differ in channels and size
    s, t = torch.randn(3, 2, 2, 2, generator=g), torch.randn(3, 5, 4, 4, generator=g)
    noise = torch.randn(3, 9, 8, 8, generator=g)
    loss = SP()(outputs([noise, noise, s, s.mean((2, 3))]), outputs([noise, t, t.mean((2, 3))]), {})["sp"]
    assert loss.dim() == 0
    diff = hand_gram(numpy(t)) - hand_gram(numpy(s))
    expected = sum(diff[i, j] ** 2 for i in range(3) for j in range(3)) / 9
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_sp_gradients_reach_the_student_not_the_teacher():
    student, teacher, method, loss = gradient_run("sp")
    assert loss.item() > 0
    assert_gradients(student, teacher, method)


def test_sp_trains_and_its_term_goes_down(tmp_path):
    trainer, logs = train_and_logs(tmp_path, "sp")
    assert_term_goes_down(trainer, logs, "sp")


def test_sp_needs_feature_maps():
    assert_needs_feature_maps("sp", "teacher", "the last stage map feats[-2]")


def test_sp_gram_is_fp32_under_autocast():
    """The Gram matrix runs with autocast off, so bf16 autocast gives the fp32 value of the (bf16) features."""
    assert_map_method_fp32_under_autocast(SP, "sp", seed=6)


def test_sp_refuses_a_token_student_in_one_sentence():
    assert_needs_feature_maps("sp", "student", "the last stage map feats[-2]")


def test_sp_builds_from_the_batch_for_a_student_declaring_no_input_size():
    """The example batch, not a declared input size, is what the models are probed with."""
    student = ShapeModel([(3, 8, 8), (6, 4, 4), (6,)])
    assert not hasattr(student, "input_size") and not hasattr(student, "pretrained_cfg")
    assert isinstance(make_method("sp", student, zoo_model("resnet8"), {"pixel_values": torch.randn(2, 3, 32, 32)}),
                      SP)
