"""SimKD (spec 2.9, 8.1-8.3): projector layout, loss and prediction against numpy, gradients, set-up checks, and an
end-to-end run whose export (backbone + projector + teacher head) reproduces the trainer's accuracy with no teacher.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoModelForImageClassification

import hfkd
from hfkd.distillation_model import DistillationModel, LossWeights
from hfkd.errors import IncompatibleSetupError, RecipeError
from hfkd.export import build_export_model
from hfkd.methods import METHODS, build_method
from hfkd.methods.simkd import SimKD
from hfkd.models import ClassifierOutput, HfkdForImageClassification, create_model
from hfkd.models.simkd_head import SimKDHead

from tests.conftest import learnable_datasets
from tests.method_helpers import (
    HeadSwap,
    assert_falls,
    assert_gradients,
    assert_needs_feature_maps,
    block_mean,
    example,
    gradient_run,
    logs_after_training,
    make_method,
    method_config,
    no_input_size_refusal,
    np_bn,
    np_conv,
    numpy,
    outputs,
    randomize_batchnorm,
    relu,
    tiny_trainer,
)

# ---- numpy SimKD from the spec ---------------------------------------------------------------------------------


def np_transfer(x: np.ndarray, state: dict, train: bool) -> np.ndarray:
    """Spec 2.9 table: conv1x1 (0), BN (1), ReLU, conv3x3 pad 1 (3), BN (4), ReLU, conv1x1 (6), BN (7), ReLU."""
    x = relu(np_bn(np_conv(x, numpy(state["transfer.0.weight"]), 0), state, "transfer.1.", train))
    x = relu(np_bn(np_conv(x, numpy(state["transfer.3.weight"]), 1), state, "transfer.4.", train))
    return relu(np_bn(np_conv(x, numpy(state["transfer.6.weight"]), 0), state, "transfer.7.", train))


def small_head(student_channels=3, teacher_channels=4, target=(2, 2)) -> SimKDHead:
    torch.manual_seed(0)
    head = SimKDHead(student_channels, teacher_channels, num_classes=3, factor=2, target_size=target)
    randomize_batchnorm(head)
    return head


# ---- layout ----------------------------------------------------------------------------------------------------


def test_projector_layout_keys_and_parameter_counts():
    expected_millions = {2: 0.2140, 4: 0.0704, 8: 0.0262}  # spec 2.9, C_s = C_t = 256
    for factor, millions in expected_millions.items():
        head = SimKDHead(256, 256, num_classes=100, factor=factor, target_size=(8, 8))
        assert round(sum(p.numel() for p in head.transfer.parameters()) / 1e6, 4) == millions
    head = SimKDHead(160, 512, num_classes=10, factor=4, target_size=(4, 4))
    kinds = [type(m) for m in head.transfer]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 3
    convs = [head.transfer[i] for i in (0, 3, 6)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding, c.groups) for c in convs] == [
        (160, 128, (1, 1), (0, 0), 1),
        (128, 128, (3, 3), (1, 1), 1),
        (128, 512, (1, 1), (0, 0), 1),
    ]
    assert all(c.bias is None for c in convs)
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    transfer_keys = [k for k in head.state_dict() if k.startswith("transfer.")]
    assert transfer_keys == [
        "transfer.0.weight", *(f"transfer.1.{n}" for n in bn), "transfer.3.weight", *(f"transfer.4.{n}" for n in bn),
        "transfer.6.weight", *(f"transfer.7.{n}" for n in bn),
    ]
    assert (head.classifier.in_features, head.classifier.out_features) == (512, 10)
    assert SimKD.default_cls == 0 and SimKD.default_div == 0 and SimKD.default_beta == 1
    assert METHODS["simkd"] is SimKD and SimKD.predict_needs_features


def test_remote_code_files_import_only_torch_and_siblings():
    models = Path(hfkd.__file__).parent / "models"
    for name in ("simkd_head.py", "prediction_heads.py", "spatial.py"):
        for node in ast.walk(ast.parse((models / name).read_text())):
            if isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] == "torch" for a in node.names), (name, ast.dump(node))
            elif isinstance(node, ast.ImportFrom):
                ok = node.level == 1 or (node.level == 0 and node.module.split(".")[0] in ("torch", "__future__"))
                assert ok, (name, ast.dump(node))


# ---- loss and prediction against numpy ----------------------------------------------------------------------------


@pytest.mark.parametrize("student_size, teacher_size", [(4, 2), (2, 4), (2, 2)])
def test_loss_is_mse_of_projected_aligned_maps(student_size, teacher_size):
    head = small_head(target=(teacher_size, teacher_size))
    method = SimKD(head).train()
    g = torch.Generator().manual_seed(1)
    f_s = torch.randn(3, 3, student_size, student_size, generator=g)
    f_t = torch.rand(3, 4, teacher_size, teacher_size, generator=g)
    state = {k: v.clone() for k, v in head.state_dict().items()}
    loss = method(outputs([f_s, f_s, f_s.mean((2, 3))]), outputs([f_t, f_t, f_t.mean((2, 3))]), {})["simkd"]

    small = min(student_size, teacher_size)
    source = block_mean(numpy(f_s), small)  # the larger map is pooled to the smaller one's size
    target = block_mean(numpy(f_t), small)
    projected = np_transfer(source, state, train=True)
    assert projected.shape == (3, 4, small, small)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(((projected - target) ** 2).mean(), rel=1e-5)


@pytest.mark.parametrize("student_size, teacher_size", [(4, 2), (2, 4)])
def test_prediction_is_teacher_head_on_pooled_projection_without_teacher(student_size, teacher_size):
    head = small_head(target=(teacher_size, teacher_size))
    method = SimKD(head).eval()
    f_s = torch.randn(3, 3, student_size, student_size, generator=torch.Generator().manual_seed(2))
    logits = method.predict(outputs([f_s, f_s, f_s.mean((2, 3))]))  # only the student's features

    source = block_mean(numpy(f_s), min(student_size, teacher_size))
    pooled = np_transfer(source, head.state_dict(), train=False).mean(axis=(2, 3))
    expected = pooled @ numpy(head.classifier.weight).T + numpy(head.classifier.bias)
    assert np.allclose(logits.detach().numpy(), expected, rtol=1e-5, atol=1e-6)


# ---- building from zoo models ----------------------------------------------------------------------------------


def test_build_copies_frozen_teacher_classifier_and_stores_teacher_size():
    student, teacher = create_model("resnet8", num_classes=4), create_model("resnet8x4", num_classes=4)
    method = make_method("simkd", student, teacher, simkd_factor=4)
    assert method.head.head_config() == {
        "type": "simkd", "student_channels": 64, "teacher_channels": 256, "num_classes": 4, "factor": 4,
        "target_size": [8, 8],
    }
    assert torch.equal(method.head.classifier.weight, teacher.classifier.weight)
    assert method.head.classifier.weight is not teacher.classifier.weight
    assert not any(p.requires_grad for p in method.head.classifier.parameters())
    assert all(p.requires_grad for p in method.head.transfer.parameters())
    assert not any(p is q for p in method.parameters() for q in teacher.parameters())


@pytest.mark.parametrize(
    "student_name, student_map, teacher_name, teacher_map",
    [
        ("vgg8", (512, 4, 4), "resnet32x4", (256, 8, 8)),  # teacher pooled to 4x4
        ("ShuffleV2_1_5", (704, 4, 4), "resnet32x4", (256, 8, 8)),  # layer3 output, before conv2
        ("resnet8x4", (256, 8, 8), "ShuffleV1", (960, 4, 4)),  # ShuffleV1's head is the Linear on layer3's mean
    ],
)
def test_reference_shape_cases(student_name, student_map, teacher_name, teacher_map):
    torch.manual_seed(0)
    student, teacher = create_model(student_name, num_classes=4), create_model(teacher_name, num_classes=4)
    method = make_method("simkd", student, teacher).train()
    assert (method.head.student_channels, method.head.teacher_channels) == (student_map[0], teacher_map[0])
    assert method.head.target_size == teacher_map[1:]
    x = torch.randn(2, 3, 32, 32)
    student_out = student(x, return_features=True)
    with torch.no_grad():
        teacher_out = teacher.eval()(x, return_features=True)
    assert tuple(student_out.feats[-2].shape[1:]) == student_map
    assert tuple(teacher_out.feats[-2].shape[1:]) == teacher_map
    loss = method(student_out, teacher_out, {})["simkd"]
    assert torch.isfinite(loss)
    assert method.predict(student_out).shape == (2, 4)


@pytest.mark.parametrize("teacher_name", ["MobileNetV2", "ShuffleV2"])
def test_teachers_with_a_layer_between_last_map_and_head_are_rejected(teacher_name):
    # their `classifier` is the real head (unlike the reference's get_feat_modules()[-1], spec 8.3), but feats[-2]
    # (MobileNetV2: 160 channels, ShuffleV2: 464) is not what the head reads (1280 / 1024 after conv2)
    student, teacher = create_model("resnet8", num_classes=4), create_model(teacher_name, num_classes=4)
    with pytest.raises(IncompatibleSetupError, match="must agree") as err:
        make_method("simkd", student, teacher)
    assert str(err.value).count(". ") == 0  # one sentence


def test_setup_errors_for_heads_and_token_features():
    student = create_model("resnet8", num_classes=4)
    mlp_head = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    with pytest.raises(IncompatibleSetupError, match="single nn.Linear"):
        make_method("simkd", student, HeadSwap(create_model("resnet8", num_classes=4), mlp_head))
    scaled = HeadSwap(create_model("resnet8", num_classes=4), nn.Linear(64, 4), logit_scale=2.0)
    with pytest.raises(IncompatibleSetupError, match="does not reproduce the teacher's logits"):
        make_method("simkd", student, scaled)


def test_torch_compile_is_refused_in_one_sentence():
    student, teacher = create_model("resnet8", num_classes=4), create_model("resnet8", num_classes=4)
    with pytest.raises(IncompatibleSetupError, match="simkd does not train under torch_compile") as err:
        make_method("simkd", student, teacher, torch_compile=True, use_cpu=True)
    assert str(err.value).count(". ") == 0 and "set torch_compile: false" in str(err.value)


# ---- gradients -------------------------------------------------------------------------------------------------


def test_gradients_reach_student_and_projector_but_not_heads_or_teacher():
    student, teacher, method, _ = gradient_run("simkd")
    assert_gradients(student, teacher, method.head.transfer)  # the stem conv and the projector; not the teacher
    assert student.classifier.weight.grad is None  # the student's own fc gets no signal from SimKD (spec 8.2)
    assert all(p.grad is None for p in method.head.classifier.parameters())


# ---- end to end: train, evaluate without the teacher, export, reload --------------------------------------------


def test_end_to_end_export_reproduces_accuracy_without_teacher(tmp_path, trained_teacher):
    train, evaluation = learnable_datasets(n_train=128, n_eval=64)
    teacher = trained_teacher
    teacher_calls = []
    teacher.register_forward_hook(lambda *args: teacher_calls.append(1))

    trainer = tiny_trainer(tmp_path, "simkd", teacher=teacher, train_dataset=train, eval_dataset=evaluation,
                           init_seed=1, num_train_epochs=4)
    student = trainer.model.student
    assert (trainer.model.weights.cls, trainer.model.weights.div, trainer.model.weights.beta) == (0.0, 0.0, 1.0)
    logs = logs_after_training(trainer, "simkd")
    assert teacher_calls  # the teacher runs in training steps
    assert_falls(logs, "loss_simkd", count=4)
    assert "loss_ce" not in logs[0] and "loss_kd" not in logs[0]  # weights 0: not computed

    teacher_calls.clear()
    metrics = trainer.evaluate()
    assert teacher_calls == []  # evaluation never runs the teacher (spec 8.1)
    assert metrics["eval_top1"] > 50.0  # 4 classes: chance is 25 %

    export = tmp_path / "export"
    trainer.save_model(str(export))
    keys = set(load_file(str(export / "model.safetensors")))
    assert {k.split(".")[0] for k in keys} == {"model", "head"}  # backbone + projector + teacher head only
    assert {k for k in keys if k.startswith("head.")} == {f"head.{k}" for k in trainer.model.method.head.state_dict()}

    reloaded = AutoModelForImageClassification.from_pretrained(export).eval()
    assert reloaded.config.prediction_head["type"] == "simkd"
    everything = evaluation.__getitems__(list(range(len(evaluation))))
    with torch.no_grad():
        logits = reloaded(everything["pixel_values"]).logits
        method_logits = trainer.model.eval().method.predict(student.eval()(everything["pixel_values"], True))
    assert torch.allclose(logits, method_logits, atol=1e-5)
    top1 = (logits.argmax(-1) == everything["labels"]).float().mean().item() * 100
    assert top1 == metrics["eval_top1"]
    # the export keeps the model contract: its classifier maps feats[-1] to the logits
    with torch.no_grad():
        out = reloaded(everything["pixel_values"][:4], return_features=True)
    assert torch.allclose(reloaded.classifier(out.feats[-1]), out.logits, atol=1e-6)
    # loaded back as a model (e.g. a student for another run), it keeps predicting with its head and re-exports it
    again = create_model(str(export))
    assert isinstance(again, HfkdForImageClassification) and again.head is not None
    re_export = build_export_model(DistillationModel(again, None, LossWeights()))
    assert re_export.config.prediction_head == reloaded.config.prediction_head
    with torch.no_grad():
        assert torch.allclose(re_export.eval()(everything["pixel_values"]).logits, logits, atol=1e-5)


# ---- mutation survivors (issue 21): build inputs, factor bounds, whole refusal sentences, the pooling warning ----


def test_build_without_example_batch_probes_the_students_input_size():
    # an evaluation-only trainer has no example batch: zeros at the student's declared 3 x 32 x 32 size stand in
    student, teacher = create_model("resnet8", num_classes=4), create_model("resnet8x4", num_classes=4)
    method = build_method("simkd", student, teacher, method_config(simkd_factor=4), None)
    assert method.head.head_config() == {
        "type": "simkd", "student_channels": 64, "teacher_channels": 256, "num_classes": 4, "factor": 4,
        "target_size": [8, 8],
    }
    student.input_size = None  # and a student that declares none cannot be sized at all
    with pytest.raises(RecipeError) as err:
        build_method("simkd", student, teacher, method_config(), None)
    assert str(err.value) == no_input_size_refusal("simkd")


@pytest.mark.parametrize("token_side", ["student", "teacher"])
def test_token_features_are_refused_in_one_whole_sentence(token_side):
    assert_needs_feature_maps("simkd", token_side, "the last stage output feats[-2]")


def test_head_refusal_names_simkd_in_its_whole_sentence():
    mlp_head = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    teacher = HeadSwap(create_model("resnet8", num_classes=4), mlp_head)
    with pytest.raises(IncompatibleSetupError) as err:
        make_method("simkd", create_model("resnet8", num_classes=4), teacher)
    assert str(err.value) == (
        "simkd reuses the teacher's classifier on student features, so it needs a teacher whose `classifier` is a "
        "single nn.Linear mapping the pooled feature feats[-1] to the logits, but its classifier Sequential holds 2 "
        "Linear layers; use a teacher with a linear head (CIFAR zoo models, most timm CNNs) or a method that does not "
        "reuse it (kd)"
    )


def test_torch_compile_refusal_in_full_and_a_config_without_the_key_builds():
    student, teacher = create_model("resnet8", num_classes=4), create_model("resnet8", num_classes=4)
    with pytest.raises(IncompatibleSetupError) as err:
        make_method("simkd", student, teacher, torch_compile=True, use_cpu=True)
    assert str(err.value) == (
        "simkd does not train under torch_compile with this torch (the compiled loss has no gradient, so the "
        "projector would not learn); set torch_compile: false"
    )
    # a config holding only what build reads (no torch_compile key) means "not compiled"
    method = SimKD.build(student, teacher, SimpleNamespace(simkd_factor=2), example())
    assert method.head.head_config()["factor"] == 2


@pytest.mark.parametrize("factor, bottleneck", [(1, 64), (64, 1)])
def test_factor_from_1_to_the_teachers_channels_builds(factor, bottleneck):
    # resnet8's feats[-2] has C_t = 64 channels; the bottleneck is C_t // f (spec 2.9, t_n // factor)
    student, teacher = create_model("resnet8", num_classes=4), create_model("resnet8", num_classes=4)
    method = make_method("simkd", student, teacher, simkd_factor=factor)
    assert method.head.transfer[0].out_channels == bottleneck == method.head.transfer[3].in_channels


@pytest.mark.parametrize("factor", [0, 65])
def test_factor_outside_1_to_the_teachers_channels_is_refused_in_full(factor):
    student, teacher = create_model("resnet8", num_classes=4), create_model("resnet8", num_classes=4)
    with pytest.raises(IncompatibleSetupError) as err:  # the recipe's range check already refuses 0; build does too
        SimKD.build(student, teacher, SimpleNamespace(simkd_factor=factor, torch_compile=False), example())
    assert str(err.value) == f"simkd_factor {factor} must be between 1 and the teacher's 64 channels of feats[-2]"


class PoolTeacher(nn.Module):
    """A teacher whose last map has values around ``level`` and whose pooled feature is ``scale * mean + shift`` of it;
    its logits are its Linear on that pooled feature, so it passes the head check."""

    def __init__(self, level: float, scale: float = 1.0, shift: float = 0.0) -> None:
        super().__init__()
        self.level, self.scale, self.shift = level, scale, shift
        self.classifier = nn.Linear(3, 3)

    def forward(self, pixel_values: torch.Tensor, return_features: bool = False) -> ClassifierOutput:
        last = self.level * (1.5 + torch.tanh(nn.functional.adaptive_avg_pool2d(pixel_values, 2)))  # [B, 3, 2, 2]
        pooled = last.mean((2, 3)) * self.scale + self.shift
        return ClassifierOutput(self.classifier(pooled), [pixel_values, last, pooled] if return_features else None)


WARNING = (
    "simkd: the teacher's pooled feature is not the global average of its last map feats[-2], so its classifier is "
    "reused on a feature it was not trained on"
)


@pytest.mark.parametrize(
    "level, scale, shift, warned",
    [
        (1.0, 1.0, 0.0, False),  # the pooled feature is the spatial mean of each sample's channels
        (10.0, 1.0 + 5e-4, 0.0, False),  # 0.05 % off, inside the relative tolerance 1e-3
        (1e-3, 1.0, 5e-5, False),  # 5e-5 off values of 1e-3, inside the absolute tolerance 1e-4
        (1e-3, 1.0, 0.5, True),  # 0.5 off: a feature the head was not trained on
    ],
)
def test_warning_when_the_teachers_pooled_feature_is_not_the_mean_of_its_last_map(caplog, level, scale, shift, warned):
    torch.manual_seed(0)
    student, teacher = create_model("resnet8", num_classes=4), PoolTeacher(level, scale, shift)
    with caplog.at_level(logging.WARNING, logger="hfkd.methods.simkd"):
        method = make_method("simkd", student, teacher)
    assert method.head.head_config()["target_size"] == [2, 2]
    messages = [r.getMessage() for r in caplog.records if r.name == "hfkd.methods.simkd"]
    assert messages == ([WARNING] if warned else [])


def test_zoo_teacher_builds_without_the_pooling_warning(caplog):
    student, teacher = create_model("resnet8", num_classes=4), create_model("resnet8x4", num_classes=4)
    with caplog.at_level(logging.WARNING, logger="hfkd.methods.simkd"):
        make_method("simkd", student, teacher)
    assert [r for r in caplog.records if r.name == "hfkd.methods.simkd"] == []
