"""CC (spec 3): correlation of consecutive examples' embedding differences, against a hand computation."""

from __future__ import annotations

import pytest
import torch

from hfkd.errors import RecipeError
from hfkd.methods import build_method
from hfkd.methods.cc import CC, cc_loss

from tests.method_helpers import (
    ShapeModel,
    assert_fp32_under_autocast,
    assert_only_term_trains,
    assert_term_goes_down,
    dot,
    linear,
    logs_after_training,
    make_method,
    method_config,
    model_gradient_run,
    no_input_size_refusal,
    outputs,
    tiny_trainer,
)


def hand_cc(e_s, e_t):
    delta = [[abs(a - b) for a, b in zip(rs, rt)] for rs, rt in zip(e_s, e_t)]
    pairs = [dot(delta[i], delta[i + 1]) for i in range(len(delta) - 1)]
    return sum(pairs) / len(pairs)


E_S = [[1.0, -2.0, 0.5], [0.0, 1.0, 1.0], [3.0, 0.2, -1.0], [0.5, 0.5, 0.5]]
E_T = [[0.5, 1.0, 0.0], [1.0, 1.0, -1.0], [2.0, 0.0, 0.0], [0.0, 0.0, 2.0]]


def test_cc_loss_matches_the_formula():
    assert cc_loss(torch.tensor(E_S), torch.tensor(E_T)).item() == pytest.approx(hand_cc(E_S, E_T), rel=1e-6)
    assert cc_loss(torch.tensor(E_S[:1]), torch.tensor(E_T[:1])).item() == 0.0  # no consecutive pair (reference: NaN)


def test_method_embeds_both_sides_with_plain_linears():
    torch.manual_seed(0)
    method = CC(student_dim=3, teacher_dim=2, embed_dim=4)
    f_s, f_t = torch.randn(5, 3), torch.randn(5, 2)
    student, teacher = outputs([f_s, f_s], torch.zeros(5, 2)), outputs([f_t, f_t], torch.zeros(5, 2))
    embed_s, embed_t = method.embed_s.linear, method.embed_t.linear
    e_s = [linear(embed_s.weight.tolist(), embed_s.bias.tolist(), f) for f in f_s.tolist()]
    e_t = [linear(embed_t.weight.tolist(), embed_t.bias.tolist(), f) for f in f_t.tolist()]
    assert method(student, teacher, {})["cc"].item() == pytest.approx(hand_cc(e_s, e_t), rel=1e-5)
    assert_fp32_under_autocast(lambda: method(student, teacher, {})["cc"], hand_cc(e_s, e_t))


def test_build_sizes_both_embeddings_and_gradients_reach_them():
    student, teacher, method, out = model_gradient_run("cc")
    assert method.embed_s.linear.weight.shape == (128, 64) and method.embed_t.linear.weight.shape == (128, 256)
    assert sum(p.numel() for p in method.parameters()) == (64 * 128 + 128) + (256 * 128 + 128)
    assert_only_term_trains(student, teacher, method, out, "cc")  # both embeddings get a gradient too


def test_cc_trains_end_to_end(tmp_path):
    trainer = tiny_trainer(tmp_path, "cc")
    assert (trainer.model.weights.cls, trainer.model.weights.div, trainer.model.weights.beta) == (1, 1, 0.02)
    assert_term_goes_down(trainer, logs_after_training(trainer, "cc"), "cc", count=2)


def test_two_examples_are_one_consecutive_pair():
    delta = [[0.5, 3.0, 0.5], [1.0, 0.0, 2.0]]  # |E_S - E_T| of the first two rows, by hand
    assert cc_loss(torch.tensor(E_S[:2]), torch.tensor(E_T[:2])).item() == pytest.approx(dot(*delta), rel=1e-6)
    assert dot(*delta) == pytest.approx(1.5)


def test_build_sizes_the_embeddings_from_the_batch_for_models_declaring_no_input_size():
    student, teacher = ShapeModel([(3, 4, 4), (5, 2, 2), (7,)]), ShapeModel([(3, 4, 4), (6, 2, 2), (9,)])
    method = make_method("cc", student, teacher, {"pixel_values": torch.randn(2, 3, 4, 4)})
    # the pooled widths 7 and 9 embedded to RepDistiller's --feat_dim 128
    assert method.embed_s.linear.weight.shape == (128, 7) and method.embed_t.linear.weight.shape == (128, 9)


def test_build_without_a_batch_probes_each_model_at_its_declared_input_size():
    student = ShapeModel([(3, 4, 4), (5, 2, 2), (7,)], input_size=(3, 4, 4))
    teacher = ShapeModel([(3, 4, 4), (6, 2, 2), (9,)], pretrained_cfg={"input_size": (3, 6, 6)})
    method = build_method("cc", student, teacher, method_config(), None)
    assert method.embed_s.linear.weight.shape == (128, 7) and method.embed_t.linear.weight.shape == (128, 9)


@pytest.mark.parametrize("undeclared", ["student", "teacher"])
def test_without_a_batch_the_model_that_declares_no_input_size_is_named(undeclared):
    sizes = {"student": {"input_size": (3, 4, 4)}, "teacher": {"input_size": (3, 4, 4)}}
    sizes[undeclared] = {}
    student = ShapeModel([(3, 4, 4), (5, 2, 2), (7,)], **sizes["student"])
    teacher = ShapeModel([(3, 4, 4), (6, 2, 2), (9,)], **sizes["teacher"])
    with pytest.raises(RecipeError) as err:
        build_method("cc", student, teacher, method_config(), None)
    assert str(err.value) == no_input_size_refusal("cc", undeclared)
