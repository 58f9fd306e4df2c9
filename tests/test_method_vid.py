"""VID (spec 2.5): one Gaussian regressor per zipped stage-map pair, loss = mean 0.5((mu - t)^2/s2 + log s2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from hfkd.methods import METHODS
from hfkd.methods.vid import VID, VIDLoss

from tests.method_helpers import (
    TWO_TOKEN_SEQUENCES,
    assert_gradients,
    assert_needs_feature_maps,
    assert_term_goes_down,
    block_mean,
    default_weights,
    gradient_run,
    make_method,
    numpy,
    outputs,
    train_and_logs,
    zoo_model,
)


def test_vid_defaults():
    assert METHODS["vid"] is VID
    assert default_weights("vid") == (1.0, 1.0, 1.0)


def test_vid_modules_for_resnet8x4_from_resnet32x4():
    method = make_method("vid", zoo_model("resnet8x4"), zoo_model("resnet32x4"))
    assert len(method.pairs) == 3
    for loss, channels in zip(method.pairs, (64, 128, 256)):
        convs = [m for m in loss.regressor if isinstance(m, nn.Conv2d)]
        assert [type(m) for m in loss.regressor] == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU, nn.Conv2d]
        assert all(c.kernel_size == (1, 1) and c.bias is None for c in convs)
        assert [(c.in_channels, c.out_channels) for c in convs] == [(channels, channels)] * 3
        assert loss.log_scale.shape == (channels,)
    # per pair 3 * C^2 weights + C log-scales
    count = sum(p.numel() for p in method.parameters())
    assert count == sum(3 * c * c + c for c in (64, 128, 256)) == 258496
    assert set(method.state_dict()) == {
        f"pairs.{i}.{k}" for i in range(3) for k in ("regressor.0.weight", "regressor.2.weight", "regressor.4.weight",
                                                     "log_scale")
    }


def test_vid_variance_starts_at_five():
    loss = VIDLoss(3, 4, 4)
    torch.testing.assert_close(loss.log_scale.detach(), torch.full((4,), math.log(math.exp(5.0 - 1e-5) - 1)))
    assert loss.log_scale[0].item() == pytest.approx(4.99325, abs=1e-4)  # "about 4.99325" (spec 2.5)
    torch.testing.assert_close(loss.variance().flatten(), torch.full((4,), 5.0))


def hand_vid(s: np.ndarray, t: np.ndarray, weights: list[np.ndarray], log_scale: np.ndarray) -> float:
    """Per pixel: mu = W3 relu(W2 relu(W1 s)); var = log(1 + exp(log_scale)) + 1e-5; mean of the Gaussian NLL."""
    w1, w2, w3 = weights
    var = np.log1p(np.exp(log_scale)) + 1e-5
    b, _, h, w = s.shape
    total, count = 0.0, 0
    for n in range(b):
        for y in range(h):
            for x in range(w):
                mu = w3 @ np.maximum(w2 @ np.maximum(w1 @ s[n, :, y, x], 0), 0)
                for c in range(len(var)):
                    total += 0.5 * ((mu[c] - t[n, c, y, x]) ** 2 / var[c] + np.log(var[c]))
                    count += 1
    return total / count


def test_vid_loss_matches_hand_computation_with_zip_and_pooling():
    g = torch.Generator().manual_seed(4)
    # student: 1 stage map (C 3, 4x4); teacher: 2 stage maps -> 1 pair; the teacher 8x8 is pooled to 4x4
    s1 = torch.randn(2, 3, 4, 4, generator=g)
    t1, t2 = torch.randn(2, 5, 8, 8, generator=g), torch.randn(2, 6, 4, 4, generator=g)
    method = VID([(3, 5)])
    with torch.no_grad():
        method.pairs[0].log_scale.copy_(torch.randn(5, generator=g))
    stem = torch.randn(2, 1, 8, 8, generator=g)
    loss = method(outputs([stem, s1, s1.mean((2, 3))]), outputs([stem, t1, t2, t2.mean((2, 3))]), {})["vid"]

    reg = method.pairs[0].regressor
    weights = [numpy(reg[i].weight)[:, :, 0, 0] for i in (0, 2, 4)]
    log_scale = numpy(method.pairs[0].log_scale)
    expected = hand_vid(numpy(s1), block_mean(numpy(t1), 4), weights, log_scale)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_vid_sums_over_pairs():
    g = torch.Generator().manual_seed(5)
    s = [torch.randn(2, c, 2, 2, generator=g) for c in (2, 3)]
    t = [torch.randn(2, c, 2, 2, generator=g) for c in (4, 5)]
    method = VID([(2, 4), (3, 5)])
    stem = torch.zeros(2, 1, 2, 2)
    total = method(outputs([stem, *s, s[-1].mean((2, 3))]), outputs([stem, *t, t[-1].mean((2, 3))]), {})["vid"]
    parts = [method.pairs[i](s[i], t[i]) for i in range(2)]
    assert total.item() == pytest.approx(sum(p.item() for p in parts), rel=1e-6)


def test_vid_gradients_reach_student_and_regressors_not_teacher():
    student, teacher, method, _ = gradient_run("vid")
    assert len(method.pairs) == 3
    assert_gradients(student, teacher, method)


def test_vid_trains_and_its_term_goes_down(tmp_path):
    # at the default beta 1 the NLL (dominated by 0.5 log sigma^2, sigma^2 = 5 at init) falls by only ~0.3% in the 4
    # steps, within batch-to-batch noise; beta 50 makes the fall (~1.3%) clear of it
    trainer, logs = train_and_logs(tmp_path, "vid", beta=50.0)
    assert_term_goes_down(trainer, logs, "vid", beta=50.0)


def test_vid_needs_feature_maps():
    assert_needs_feature_maps("vid", "student", "the stage maps feats[1:-1]", TWO_TOKEN_SEQUENCES)


def test_variance_is_shaped_to_broadcast_over_a_map():
    """softplus(log_scale) + eps per channel as [1, C_t, 1, 1]: log_scale 0 gives log 2 + 1e-5 (eps, RepDistiller's
    VIDLoss default)."""
    loss = VIDLoss(3, 4, 4)
    with torch.no_grad():
        loss.log_scale.copy_(torch.tensor([0.0, 1.0, -1.0, 2.0]))
    variance = loss.variance()
    assert variance.shape == (1, 4, 1, 1) and variance.dtype == torch.float32
    expected = [math.log1p(math.exp(v)) + 1e-5 for v in (0.0, 1.0, -1.0, 2.0)]
    assert variance.flatten().tolist() == pytest.approx(expected, rel=1e-6)
    assert (torch.zeros(2, 4, 3, 5) + variance).shape == (2, 4, 3, 5)
