"""DistillationModel and resolve_loss_weights: the weights each method starts from, the zero-weight refusal, the
loss assembled from the terms, and what build takes from the example batch (issue 21's mutation run of this module)."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from hfkd.config import DistillationConfig
from hfkd.distillation_model import DistillationModel, LossWeights, head_logits, resolve_loss_weights
from hfkd.errors import RecipeError
from hfkd.models import create_model
from hfkd.models.outputs import ClassifierOutput

ZERO_WEIGHTS = "cls, div and beta give every loss term a weight of 0, so nothing would be trained"


def args(tmp_path, **values) -> DistillationConfig:
    return DistillationConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, **values)


def test_method_none_trains_on_cross_entropy_alone(tmp_path):
    assert resolve_loss_weights(args(tmp_path, method="none")) == LossWeights(cls=1.0, div=0.0, beta=0.0)


def test_the_temperature_and_label_smoothing_reach_the_weights(tmp_path):
    weights = resolve_loss_weights(args(tmp_path, method="kd", kd_temperature=2.5, label_smoothing_factor=0.1))
    assert (weights.kd_temperature, weights.label_smoothing) == (2.5, 0.1)


@pytest.mark.parametrize("method, weights", [("kd", (0, 0, 0)), ("fitnet", (0, 0, 0)), ("none", (0, 0, 0)),
                                             ("none", (0, 1, 1))])  # none computes no div or beta term
def test_all_zero_weights_are_refused_in_one_sentence(tmp_path, method, weights):
    cls, div, beta = weights
    with pytest.raises(RecipeError) as error:
        resolve_loss_weights(args(tmp_path, method=method, cls=cls, div=div, beta=beta))
    assert str(error.value) == ZERO_WEIGHTS


@pytest.mark.parametrize("weights", [(0, 0.5, 0), (0, 0, 0.5), (0.5, 0, 0)])
def test_any_positive_weight_trains(tmp_path, weights):
    cls, div, beta = weights
    assert resolve_loss_weights(args(tmp_path, method="fitnet", cls=cls, div=div, beta=beta)) == LossWeights(
        cls=cls, div=div, beta=beta)


def test_head_logits_picks_the_named_head():
    out = ClassifierOutput(logits=torch.zeros(2, 3), head_logits={"dist": torch.ones(2, 3)})
    assert torch.equal(head_logits(out, "dist"), torch.ones(2, 3)) and torch.equal(head_logits(out, None),
                                                                                  torch.zeros(2, 3))


def batch(height: int = 32, width: int = 32) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"pixel_values": torch.randn(4, 3, height, width), "labels": torch.tensor([0, 1, 2, 3])}


def test_build_reads_the_training_side_from_the_batch_and_defaults_to_32(tmp_path):
    student = create_model("resnet8", num_classes=4)
    config = args(tmp_path, method="kd")
    weights = resolve_loss_weights(config)
    wide = DistillationModel.build(student, create_model("resnet8", num_classes=4), config, weights, batch(32, 40))
    assert wide.image_size == 40  # the last axis: the width, as the export's config records image_size
    assert DistillationModel.build(student, None, args(tmp_path, method="none"), weights, None).image_size == 32


def test_build_sizes_a_feature_method_on_the_example_batch(tmp_path):
    config = args(tmp_path, method="fitnet")
    model = DistillationModel.build(create_model("resnet8", num_classes=4), create_model("resnet20", num_classes=4),
                                    config, resolve_loss_weights(config), batch())
    assert model.method is not None and sum(p.numel() for p in model.method.parameters()) > 0


@pytest.fixture
def build_calls(monkeypatch):
    """What DistillationModel.build hands the method registry (a spy around the real build_method)."""
    import hfkd.distillation_model as module

    calls, real = [], module.build_method

    def spy(name, student, teacher, config, example_batch, train_dataset=None):
        calls.append({"teacher": teacher, "example_batch": example_batch, "train_dataset": train_dataset})
        return real(name, student, teacher, config, example_batch, train_dataset=train_dataset)

    monkeypatch.setattr(module, "build_method", spy)
    return calls


def test_build_hands_the_method_the_teacher_the_example_batch_and_the_training_set(tmp_path, build_calls):
    config, teacher, data, train = args(tmp_path, method="kd"), create_model("resnet8", num_classes=4), batch(), object()
    DistillationModel.build(create_model("resnet8", num_classes=4), teacher, config, resolve_loss_weights(config), data,
                            train_dataset=train)
    (call,) = build_calls
    assert call["teacher"] is teacher and call["example_batch"] is data and call["train_dataset"] is train


def test_method_none_drops_a_given_teacher_with_a_warning(tmp_path, caplog, build_calls):
    config = args(tmp_path, method="none")
    with caplog.at_level(logging.WARNING, logger="hfkd.distillation_model"):
        model = DistillationModel.build(create_model("resnet8", num_classes=4), create_model("resnet8", num_classes=4),
                                        config, resolve_loss_weights(config), batch())
    assert model.method is None and not model.needs_teacher and build_calls[0]["teacher"] is None
    assert [r.getMessage() for r in caplog.records] == ["method 'none' trains the model alone; the teacher is not used"]


def test_the_loss_is_the_weighted_sum_of_the_terms_in_float32_with_the_students_logits(tmp_path):
    config = args(tmp_path, method="kd", cls=0.3, div=0.7, kd_temperature=2.0)
    teacher = create_model("resnet8", num_classes=4).eval()
    model = DistillationModel.build(create_model("resnet8", num_classes=4), teacher, config,
                                    resolve_loss_weights(config), batch()).train()
    data = batch()
    with torch.no_grad():
        teacher_out = teacher(data["pixel_values"])
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 logits: the loss must still sum in float32
        out = model(**data, teacher_outputs=teacher_out, epoch=1)
    assert set(out) == {"loss", "logits", "terms"} and out["loss"].dtype == torch.float32
    assert out["logits"].shape == (4, 4)
    ce = F.cross_entropy(out["logits"].float(), data["labels"])
    assert out["terms"]["ce"].item() == pytest.approx(ce.item(), rel=1e-6)
    expected = 0.3 * out["terms"]["ce"] + 0.7 * out["terms"]["kd"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
