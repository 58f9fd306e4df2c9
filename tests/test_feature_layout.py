"""Stage-map losses follow the maps' memory layout (hfkd.methods.components.memory_layout): the same values and
gradients for an NCHW map and the same map stored channels-last, no copy of the map, and the gradient back in the
map's own layout."""

from __future__ import annotations

import pytest
import torch

from hfkd.methods.at import AT
from hfkd.methods.components.memory_layout import channel_view, is_channels_last, spatial_vectors
from hfkd.methods.components.stage_map_pairs import aligned_stage_pairs
from hfkd.methods.nst import NST
from hfkd.methods.vid import VID

from tests.method_helpers import outputs

# student maps [2, 3, 4, 4] and [2, 5, 2, 2]; teacher maps of the same sizes, 6 and 4 channels
SHAPES_S = [(2, 3, 4, 4), (2, 5, 2, 2)]
SHAPES_T = [(2, 6, 4, 4), (2, 4, 2, 2)]


def _maps(shapes, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    maps = [torch.randn(*shape, generator=g).relu() for shape in shapes]
    maps[0][:, :, 0, 0] = 0  # a position where every channel is zero, as after a ReLU
    return maps


def _feats(maps: list[torch.Tensor]) -> list[torch.Tensor]:
    """``[stem, *maps, pooled]``: the stage maps are ``feats[1:-1]``."""
    return [maps[0], *maps, maps[-1].mean((2, 3))]


def _loss_and_grads(method, student_maps, teacher_maps, memory_format):
    leaves = [m.detach().contiguous(memory_format=memory_format).requires_grad_() for m in student_maps]
    teacher = [m.contiguous(memory_format=memory_format) for m in teacher_maps]
    loss = next(iter(method(outputs(_feats(leaves)), outputs(_feats(teacher)), {}).values()))
    loss.backward()
    return loss, leaves


def _vid() -> VID:
    torch.manual_seed(0)
    return VID([(3, 6), (5, 4)])


@pytest.mark.parametrize("make", [AT, NST, _vid], ids=["at", "nst", "vid"])
def test_stage_map_loss_is_the_same_in_both_layouts_and_its_gradient_keeps_the_layout(make):
    method = make()
    s, t = _maps(SHAPES_S, 1), _maps(SHAPES_T, 2)
    loss_nchw, leaves_nchw = _loss_and_grads(method, s, t, torch.contiguous_format)
    method.zero_grad()
    loss_cl, leaves_cl = _loss_and_grads(method, s, t, torch.channels_last)
    assert torch.isfinite(loss_nchw) and loss_nchw.item() > 0
    assert loss_cl.item() == pytest.approx(loss_nchw.item(), rel=1e-6)
    for nchw, cl in zip(leaves_nchw, leaves_cl):
        assert torch.isfinite(nchw.grad).all() and nchw.grad.abs().sum() > 0
        torch.testing.assert_close(cl.grad, nchw.grad, rtol=1e-5, atol=1e-8)
        assert nchw.grad.is_contiguous()
        assert cl.grad.is_contiguous(memory_format=torch.channels_last)


def test_views_share_the_maps_memory_in_both_layouts():
    x = torch.randn(2, 3, 4, 5)
    for stored in (x, x.contiguous(memory_format=torch.channels_last)):
        view, channel_dim = channel_view(stored)
        assert view.data_ptr() == stored.data_ptr() and view.is_contiguous()
        assert view.shape[channel_dim] == 3
        torch.testing.assert_close(view.sum(channel_dim), x.sum(1), rtol=0, atol=0)
        vectors = spatial_vectors(stored)
        assert vectors.data_ptr() == stored.data_ptr() and vectors.shape == (2, 3, 20)
        torch.testing.assert_close(vectors, x.flatten(2), rtol=0, atol=0)
    assert is_channels_last(x.contiguous(memory_format=torch.channels_last)) and not is_channels_last(x)
    # C = 1: both layouts are the same memory order, so it counts as plain
    assert not is_channels_last(torch.randn(2, 1, 4, 4).contiguous(memory_format=torch.channels_last))


def test_only_pooled_pairs_are_upcast():
    s_same, t_same = torch.randn(2, 3, 4, 4).bfloat16(), torch.randn(2, 5, 4, 4).bfloat16()
    s_big, t_small = torch.randn(2, 3, 4, 4).bfloat16(), torch.randn(2, 5, 2, 2).bfloat16()
    s_same = s_same.contiguous(memory_format=torch.channels_last)
    (a, b), (c, d) = aligned_stage_pairs(_feats([s_same, s_big]), _feats([t_same, t_small]))
    assert a is s_same and b is t_same  # same size: untouched (dtype and layout)
    assert c.dtype == torch.float32 and d.dtype == torch.float32
    assert c.shape[-2:] == d.shape[-2:] == (2, 2)
    torch.testing.assert_close(c, torch.nn.functional.adaptive_avg_pool2d(s_big.float(), (2, 2)))
