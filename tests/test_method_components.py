"""What the feature methods share (hfkd.methods.components): probing the models for shapes, pairing stage maps,
matmuls laid out like a map, and the world size of the collectives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist

from hfkd.errors import IncompatibleSetupError, RecipeError
from hfkd.methods import build_method
from hfkd.methods.components.collectives import world_size
from hfkd.methods.components.memory_layout import matmuls_laid_out_like, spatial_vectors
from hfkd.methods.components.probing import example_pixels

from tests.method_helpers import ShapeModel, method_config, no_input_size_refusal, numpy

MAPS = [(3, 4, 4), (5, 2, 2), (6, 2, 2), (7,)]  # stem, two stage maps, pooled

# ---- probing: the example images -------------------------------------------------------------------------------


def test_example_pixels_are_the_batch_else_zeros_at_the_declared_input_size():
    model = ShapeModel(MAPS, input_size=(3, 5, 7), pretrained_cfg={"input_size": (3, 9, 9)})
    batch = {"pixel_values": torch.randn(4, 3, 6, 6)}
    assert example_pixels(model, batch, "at") is batch["pixel_values"]
    # no batch, or one without images: two zero images at the model's input_size (which wins over pretrained_cfg)
    for no_images in (None, {"labels": torch.zeros(2)}, {"pixel_values": None}):
        pixels = example_pixels(model, no_images, "at")
        assert pixels.shape == (2, 3, 5, 7) and pixels.dtype == torch.float32 and pixels.device.type == "cpu"
        assert pixels.abs().max() == 0


def test_example_pixels_fall_back_to_a_timm_pretrained_cfg_input_size():
    model = ShapeModel(MAPS, pretrained_cfg={"input_size": (3, 9, 8), "mean": (0.5, 0.5, 0.5)})
    assert not hasattr(model, "input_size")
    pixels = example_pixels(model, None, "vid")
    assert pixels.shape == (2, 3, 9, 8) and pixels.abs().max() == 0


@pytest.mark.parametrize("pretrained_cfg", [None, {"mean": (0.5, 0.5, 0.5)}])
def test_example_pixels_refuse_a_model_declaring_no_input_size(pretrained_cfg):
    model = ShapeModel(MAPS, pretrained_cfg=pretrained_cfg)
    with pytest.raises(RecipeError) as err:
        example_pixels(model, None, "nst")
    assert str(err.value) == no_input_size_refusal("nst")


@pytest.mark.parametrize("name", ["at", "nst", "vid", "sp", "fitnet", "cc"])
def test_each_probing_method_names_itself_when_there_is_no_batch_to_probe_with(name):
    student, teacher = ShapeModel(MAPS), ShapeModel(MAPS)
    with pytest.raises(RecipeError) as err:
        build_method(name, student, teacher, method_config(), None)
    assert str(err.value) == no_input_size_refusal(name)


# ---- stage-map pairs --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["at", "vid"])
@pytest.mark.parametrize("student_maps, teacher_maps", [(0, 2), (2, 0), (0, 0)])
def test_models_without_a_stage_map_pair_are_refused_with_both_counts(name, student_maps, teacher_maps):
    """feats = [stem, *stage maps, pooled]: the counts are len(feats) - 2."""
    def model(maps: int) -> ShapeModel:
        return ShapeModel([(3, 4, 4), *[(5, 2, 2)] * maps, (5,)])

    with pytest.raises(IncompatibleSetupError) as err:
        build_method(name, model(student_maps), model(teacher_maps), method_config(),
                     {"pixel_values": torch.randn(2, 3, 4, 4)})
    assert str(err.value) == (
        f"{name} pairs the stage maps feats[1:-1] of student and teacher, but the student has {student_maps} and the "
        f"teacher {teacher_maps}; use models with at least one stage map between the stem and the pooled vector"
    )


# ---- matmuls laid out like a map --------------------------------------------------------------------------------


def hand_matmul_sum(terms) -> np.ndarray:
    """sum over terms of x @ y, batched, with loops."""
    x0, y0 = (numpy(t) for t in terms[0])
    out = np.zeros((x0.shape[0], x0.shape[1], y0.shape[2]))
    for x, y in ((numpy(a), numpy(b)) for a, b in terms):
        for b in range(x.shape[0]):
            for i in range(x.shape[1]):
                for j in range(y.shape[2]):
                    out[b, i, j] += sum(x[b, i, k] * y[b, k, j] for k in range(x.shape[2]))
    return out


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
def test_matmul_sums_come_back_in_the_memory_order_of_like(layout):
    """``like`` is [B, C, P] = [2, 2, 6]: positions fastest (an NCHW map, or a non-dense slice in that order) gives a
    contiguous result; channels fastest (a channels-last map, strides (P C, 1, C)) gives the transpose of a
    contiguous [B, P, C]."""
    g = torch.Generator().manual_seed(0)
    b, c, p = 2, 2, 6
    if layout == "strided":
        like = torch.randn(b, c, 2 * p, generator=g)[:, :, ::2]
    else:
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        like = spatial_vectors(torch.randn(b, c, 2, 3, generator=g).contiguous(memory_format=fmt))
    terms = [(torch.randn(b, c, c, generator=g), torch.randn(b, c, p, generator=g)),
             (torch.randn(b, c, 3, generator=g), torch.randn(b, 3, p, generator=g))]
    total = matmuls_laid_out_like(like, terms)
    assert total.shape == (b, c, p)
    np.testing.assert_allclose(numpy(total), hand_matmul_sum(terms), rtol=1e-5, atol=1e-6)
    if layout == "channels_last":
        assert like.stride() == (p * c, 1, c) and total.stride() == (p * c, 1, c)
    else:
        assert total.is_contiguous()


# ---- collectives ------------------------------------------------------------------------------------------------


def test_world_size_is_one_without_a_process_group_and_the_groups_size_with_one(monkeypatch):
    assert not dist.is_initialized() and world_size() == 1
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 3)
    assert world_size() == 3
