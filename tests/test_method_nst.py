"""NST (spec 3): squared MMD of channel-normalised spatial vectors with the kernel (a.b)^2, summed over pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfkd.methods import METHODS
from hfkd.methods.nst import NST

from tests.method_helpers import (
    assert_gradients,
    assert_map_method_fp32_under_autocast,
    assert_needs_feature_maps,
    assert_term_goes_down,
    block_mean,
    default_weights,
    gradient_run,
    numpy,
    outputs,
    train_and_logs,
)


def hand_vectors(f: np.ndarray) -> np.ndarray:
    """[B, C, H*W] with every channel's spatial vector divided by its L2 norm."""
    b, c = f.shape[:2]
    v = f.reshape(b, c, -1)
    return np.stack([[v[i, k] / np.sqrt((v[i, k] ** 2).sum()) for k in range(c)] for i in range(b)])


def hand_mean_kernel(x: np.ndarray, y: np.ndarray) -> float:
    """Mean over samples and channel pairs of (x_i . y_j)^2."""
    values = [float(np.dot(x[b, i], y[b, j])) ** 2 for b in range(x.shape[0]) for i in range(x.shape[1])
              for j in range(y.shape[1])]
    return sum(values) / len(values)


def hand_nst(s: np.ndarray, t: np.ndarray) -> float:
    vs, vt = hand_vectors(s), hand_vectors(t)
    return hand_mean_kernel(vt, vt) + hand_mean_kernel(vs, vs) - 2 * hand_mean_kernel(vs, vt)


def test_nst_defaults():
    assert METHODS["nst"] is NST
    assert default_weights("nst") == (1.0, 1.0, 50.0)
    assert not list(NST().parameters())


def test_nst_loss_matches_hand_computation_with_zip_and_pooling():
    g = torch.Generator().manual_seed(2)
    # student 3 stage maps, teacher 2 -> 2 pairs; pair 1 pools the student 4x4 -> 2x2
    s1, s2, s3 = (torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 2, 2, 2, generator=g),
                  torch.randn(2, 5, 1, 1, generator=g))
    t1, t2 = torch.randn(2, 4, 2, 2, generator=g), torch.randn(2, 3, 2, 2, generator=g)
    stem = torch.randn(2, 1, 4, 4, generator=g)
    loss = NST()(outputs([stem, s1, s2, s3, s3.flatten(1)]), outputs([stem, t1, t2, t2.mean((2, 3))]), {})["nst"]
    expected = hand_nst(block_mean(numpy(s1), 2), numpy(t1)) + hand_nst(numpy(s2), numpy(t2))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_nst_teacher_kernel_is_detached():
    """Only -2 mean K(s,t) sends gradient to the teacher map: K(t,t) is a constant (spec 3)."""
    g = torch.Generator().manual_seed(3)
    s = torch.randn(2, 3, 2, 2, generator=g)
    t = torch.randn(2, 4, 2, 2, generator=g, requires_grad=True)
    NST()(outputs([s, s, s.mean((2, 3))]), outputs([t, t, t.mean((2, 3))]), {})["nst"].backward()

    t2 = t.detach().clone().requires_grad_(True)
    vs = torch.nn.functional.normalize(s.flatten(2), dim=2)
    vt = t2.flatten(2) / t2.flatten(2).norm(dim=2, keepdim=True)
    cross = torch.stack([(vs[b, i] @ vt[b, j]) ** 2 for b in range(2) for i in range(3) for j in range(4)]).mean()
    (-2 * cross).backward()
    torch.testing.assert_close(t.grad, t2.grad)


def test_nst_gradients_reach_the_student_not_the_teacher():
    student, teacher, method, loss = gradient_run("nst")
    assert loss.item() > 0
    assert_gradients(student, teacher, method)


def test_nst_trains_and_its_term_goes_down(tmp_path):
    trainer, logs = train_and_logs(tmp_path, "nst")
    assert_term_goes_down(trainer, logs, "nst")


def test_nst_needs_feature_maps():
    assert_needs_feature_maps("nst", "teacher", r"^nst needs the stage maps feats\[1:-1\] of the teacher")


def test_nst_kernels_are_fp32_under_autocast():
    """The kernel matmuls run with autocast off, so bf16 autocast gives the fp32 value of the (bf16) features."""
    assert_map_method_fp32_under_autocast(NST, "nst", seed=7)


@pytest.mark.parametrize("channels_last", [False, True])
def test_position_space_form_equals_the_channel_space_form_in_value_and_gradient(channels_last):
    """The last stage of resnet32x4 / resnet8x4 (64 positions, 256 channels): nst_loss takes the [P, P] Gram form
    there; it must give the reference's channel-kernel value and student gradient."""
    from hfkd.methods.nst import channel_space_mmd, channel_vectors, nst_loss, position_space_mmd

    g = torch.Generator().manual_seed(4)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    student = torch.randn(4, 256, 8, 8, generator=g).relu().contiguous(memory_format=fmt)
    teacher = torch.randn(4, 256, 8, 8, generator=g).relu().contiguous(memory_format=fmt)
    losses, grads = [], []
    for form in (channel_space_mmd, position_space_mmd, None):
        s = student.clone().requires_grad_(True)
        loss = nst_loss(s, teacher) if form is None else form(channel_vectors(s), channel_vectors(teacher))
        loss.backward()
        losses.append(loss.item())
        grads.append(s.grad)
    assert losses[0] > 0
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    assert losses[2] == losses[1]  # nst_loss chose the position form for this shape
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-9)
