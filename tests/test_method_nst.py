"""NST (spec 3): squared MMD of channel-normalised spatial vectors with the kernel (a.b)^2, summed over pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfkd.methods import METHODS
from hfkd.methods.nst import NST

from tests.method_helpers import (
    TWO_TOKEN_SEQUENCES,
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
    assert_needs_feature_maps("nst", "teacher", "the stage maps feats[1:-1]", TWO_TOKEN_SEQUENCES)


def test_nst_kernels_are_fp32_under_autocast():
    """The kernel matmuls run with autocast off, so bf16 autocast gives the fp32 value of the (bf16) features."""
    assert_map_method_fp32_under_autocast(NST, "nst", seed=7)


def op_by_op_nst(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """The reference's loss as autograd ops (RepDistiller's NSTLoss): F.normalize, three kernels, K(t,t) detached."""
    a = torch.nn.functional.normalize(student.float().flatten(2), dim=2)
    b = torch.nn.functional.normalize(teacher.float().flatten(2), dim=2)

    def mean_kernel(x, y):
        return torch.bmm(x, y.transpose(1, 2)).pow(2).mean()

    return mean_kernel(b, b).detach() + mean_kernel(a, a) - 2 * mean_kernel(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(
    "student_shape, teacher_shape, position_grams",
    [
        ((3, 6, 4, 4), (3, 5, 4, 4), False),  # more positions than channels: channel kernels
        ((3, 12, 2, 2), (3, 10, 2, 2), True),  # fewer: position Grams
        ((4, 256, 8, 8), (4, 256, 8, 8), True),  # the last stage of resnet8x4 / resnet32x4
    ],
)
def test_written_out_gradient_equals_the_op_by_op_reference(
    student_shape, teacher_shape, position_grams, channels_last, dtype
):
    """nst_loss's value and its gradients to student and teacher maps are the op-by-op reference's, in either form,
    layout and dtype, with a dead (all-zero) channel whose normalised vector F.normalize leaves at zero."""
    from hfkd.methods.nst import nst_loss, uses_position_grams

    positions = student_shape[2] * student_shape[3]
    assert uses_position_grams(positions, student_shape[1], teacher_shape[1]) is position_grams
    g = torch.Generator().manual_seed(4)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    maps = [torch.randn(shape, generator=g).relu() for shape in (student_shape, teacher_shape)]
    maps[0][:, 1] = 0
    maps = [m.to(dtype).contiguous(memory_format=fmt) for m in maps]
    results = []
    for loss_fn in (op_by_op_nst, nst_loss):
        s, t = (m.clone().requires_grad_(True) for m in maps)
        loss = loss_fn(s, t)
        loss.backward()
        results.append((loss, s.grad, t.grad))
    (ref_loss, ref_s, ref_t), (loss, grad_s, grad_t) = results
    assert loss.dtype == torch.float32 and ref_loss.item() > 0
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-5)
    for grad, ref in ((grad_s, ref_s), (grad_t, ref_t)):
        assert grad.dtype == dtype and grad.is_contiguous(memory_format=fmt)
        # fp32: rounding, relative to the largest entry (entries are differences of similar terms); bf16: both are
        # roundings of (nearly) the same fp32 value, one bf16 step apart at most
        scale = ref.abs().max().item()
        if dtype == torch.float32:
            tolerance = {"rtol": 1e-4, "atol": 1e-5 * scale}
        else:
            tolerance = {"rtol": 8e-3, "atol": 1e-3 * scale}
        torch.testing.assert_close(grad, ref, **tolerance)
    assert grad_s[:, 1].abs().max() == 0 and grad_s.abs().max() > 0


def test_the_loss_is_fp32_inside_autocast_and_backward_runs_after_it():
    from hfkd.methods.nst import nst_loss

    g = torch.Generator().manual_seed(5)
    s = torch.randn(2, 6, 4, 4, generator=g).relu().requires_grad_(True)
    t = torch.randn(2, 5, 4, 4, generator=g).relu()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nst_loss(s, t)
    loss.backward()
    s2 = s.detach().clone().requires_grad_(True)
    op_by_op_nst(s2, t).backward()
    assert loss.item() == pytest.approx(op_by_op_nst(s, t).item(), rel=1e-5)
    torch.testing.assert_close(s.grad, s2.grad, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("at_eps", [False, True])
def test_a_channel_whose_norm_is_clamped_gets_the_reference_gradient(at_eps):
    """Below F.normalize's eps (1e-12) the norm is a constant: the vector is x / eps and its gradient has no radial
    term. At exactly eps too: torch's clamp_min passes no gradient where the input equals the bound."""
    from hfkd.methods.nst import nst_loss

    g = torch.Generator().manual_seed(6)
    student = torch.randn(2, 6, 4, 4, generator=g).relu()
    student[:, 2] = torch.rand(2, 4, 4, generator=g) * 1e-14
    if at_eps:  # one non-zero position: the norm is that value, fp32(1e-12), exactly
        student[:, 2] = 0
        student[:, 2, 1, 2] = 1e-12
    teacher = torch.randn(2, 5, 4, 4, generator=g).relu()
    grads = []
    for loss_fn in (op_by_op_nst, nst_loss):
        s = student.clone().requires_grad_(True)
        loss_fn(s, teacher).backward()
        grads.append(s.grad)
    ref, grad = grads
    torch.testing.assert_close(grad[:, 2], ref[:, 2], rtol=1e-4, atol=0)
    others = [0, 1, 3, 4, 5]
    scale = ref[:, others].abs().max().item()
    torch.testing.assert_close(grad[:, others], ref[:, others], rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize(
    "positions, c_s, c_t",
    [(1, 2, 2), (3, 2, 2), (4, 2, 2), (2, 3, 1), (5, 3, 4), (4, 12, 10), (16, 6, 5), (64, 256, 256), (3, 1, 1)],
)
def test_the_position_grams_are_chosen_exactly_when_they_are_less_matmul_work(positions, c_s, c_t):
    """Multiply-adds counted with loops: two [P, P] Grams over C_s and C_t channels against the three [C, C]
    channel kernels over P positions; (3, 2, 2) is a tie (24 each), where the channel kernels are kept."""
    grams = sum(c for _ in range(positions) for _ in range(positions) for c in (c_s, c_t))
    kernels = sum(positions for rows, cols in ((c_s, c_s), (c_t, c_t), (c_s, c_t)) for _ in range(rows * cols))
    from hfkd.methods.nst import uses_position_grams

    assert uses_position_grams(positions, c_s, c_t) is (grams < kernels)


@pytest.mark.parametrize(
    "student_shape, teacher_shape, kernel_shapes",
    [((3, 12, 2, 2), (3, 10, 2, 2), [(3, 4, 4), (3, 4, 4)]), ((3, 6, 4, 4), (3, 5, 4, 4), [(3, 6, 6), (3, 6, 5)])],
)
def test_the_forward_keeps_the_kernels_of_the_cheaper_form_for_the_backward(student_shape, teacher_shape,
                                                                             kernel_shapes):
    """4 positions and 12 + 10 channels: the [P, P] position Grams of A and B; 16 positions and 6 + 5 channels: the
    channel kernels A A^T [C_s, C_s] and A B^T [C_s, C_t]. The backward reads what the forward chose."""
    from hfkd.methods.nst import nst_loss

    g = torch.Generator().manual_seed(8)
    s = torch.randn(student_shape, generator=g).requires_grad_(True)
    t = torch.randn(teacher_shape, generator=g)
    loss = nst_loss(s, t)
    assert [tuple(k.shape) for k in loss.grad_fn.saved_tensors[-2:]] == kernel_shapes
    assert loss.item() == pytest.approx(op_by_op_nst(s, t).item(), rel=1e-5)


def test_as_map_gives_the_vectors_back_as_the_map_in_its_dtype_and_layout():
    from hfkd.methods.components.memory_layout import spatial_vectors
    from hfkd.methods.nst import as_map

    g = torch.Generator().manual_seed(10)
    x = torch.randn(2, 3, 2, 4, generator=g)
    for fmt in (torch.contiguous_format, torch.channels_last):
        stored = x.contiguous(memory_format=fmt)
        back = as_map(spatial_vectors(stored).float(), stored.shape, torch.bfloat16)
        assert back.dtype == torch.bfloat16 and back.shape == (2, 3, 2, 4)
        assert back.is_contiguous(memory_format=fmt)
        torch.testing.assert_close(back, x.bfloat16(), rtol=0, atol=0)
