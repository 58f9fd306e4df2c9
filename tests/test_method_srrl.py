"""SRRL (spec 2.8): transfer layout and keys, the loss against numpy, gradients through the frozen teacher head,
MobileNetV2 / ShuffleNet teachers (their real head, spec 8.3), set-up errors, and a tiny training run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hfkd.errors import IncompatibleSetupError, RecipeError
from hfkd.methods import METHODS, DistillationMethod, build_method
from hfkd.methods.srrl import SRRL
from hfkd.models import create_model

from tests.conftest import learnable_datasets
from tests.method_helpers import (
    HeadSwap,
    TokenModel,
    assert_falls,
    assert_gradients,
    default_weights,
    gradient_run,
    logs_after_training,
    make_method,
    method_config,
    no_input_size_refusal,
    numpy,
    outputs,
    randomize_batchnorm,
    tiny_trainer,
)


def test_transfer_layout_keys_and_defaults():
    method = SRRL(8, 6, nn.Linear(6, 3).requires_grad_(False))
    assert list(method.state_dict()) == [
        "transfer.0.weight",
        "transfer.1.weight", "transfer.1.bias", "transfer.1.running_mean", "transfer.1.running_var",
        "transfer.1.num_batches_tracked",
        "teacher_classifier.weight", "teacher_classifier.bias",
    ]
    conv = method.transfer[0]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.bias) == (8, 6, (1, 1), None)
    assert isinstance(method.transfer[1], nn.BatchNorm2d) and isinstance(method.transfer[2], nn.ReLU)
    assert default_weights("srrl") == (1, 1, 1) and METHODS["srrl"] is SRRL
    assert SRRL.predict is DistillationMethod.predict  # the student's own classifier predicts


def test_loss_matches_spec_formula():
    torch.manual_seed(0)
    classifier = nn.Linear(5, 3).requires_grad_(False)
    method = SRRL(4, 5, classifier).train()
    randomize_batchnorm(method)
    g = torch.Generator().manual_seed(3)
    f_s, f_t = torch.randn(6, 4, generator=g), torch.rand(6, 5, generator=g)
    z_t = torch.randn(6, 3, generator=g)
    terms = method(outputs([f_s]), outputs([f_t], logits=z_t), {})

    state = method.state_dict()
    z = numpy(f_s) @ numpy(state["transfer.0.weight"])[:, :, 0, 0].T  # 1x1 conv on [B, C_s, 1, 1]
    mean, var = z.mean(0), z.var(0)  # BatchNorm2d batch statistics over B (H = W = 1), biased variance
    h = (z - mean) / np.sqrt(var + 1e-5) * numpy(state["transfer.1.weight"]) + numpy(state["transfer.1.bias"])
    h = np.maximum(h, 0.0)
    logits = h @ numpy(classifier.weight).T + numpy(classifier.bias)
    assert set(terms) == {"srrl_feature", "srrl_logit"}
    assert terms["srrl_feature"].item() == pytest.approx(((h - numpy(f_t)) ** 2).mean(), rel=1e-5)
    assert terms["srrl_logit"].item() == pytest.approx(((logits - numpy(z_t)) ** 2).mean(), rel=1e-5)
    assert all(t.dtype == torch.float32 for t in terms.values())


def test_gradients_flow_through_frozen_teacher_head_to_student():
    # the logit term alone: its gradient reaches transfer and the student only through the frozen teacher head
    student, teacher, method, _ = gradient_run("srrl", term="srrl_logit")
    assert torch.equal(method.teacher_classifier.weight, teacher.classifier.weight)
    assert not any(p.requires_grad for p in method.teacher_classifier.parameters())
    assert_gradients(student, teacher, method.transfer)  # the stem conv and the transfer; not the teacher
    assert all(p.grad is None for p in method.teacher_classifier.parameters())


@pytest.mark.parametrize("teacher_name, width", [("MobileNetV2", 1280), ("ShuffleV1", 960), ("ShuffleV2", 1024)])
def test_mobilenet_and_shufflenet_teachers_reuse_their_real_head(teacher_name, width):
    # the reference takes get_feat_modules()[-1] (a block list or layer3) as the head; hfkd uses the real Linear
    torch.manual_seed(0)
    student, teacher = create_model("resnet8", num_classes=4), create_model(teacher_name, num_classes=4)
    method = make_method("srrl", student, teacher)
    linear = [m for m in teacher.classifier.modules() if isinstance(m, nn.Linear)][0]
    assert isinstance(method.teacher_classifier, nn.Linear) and method.teacher_classifier.in_features == width
    assert torch.equal(method.teacher_classifier.weight, linear.weight)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        teacher_out = teacher.eval()(x, return_features=True)
        assert torch.allclose(method.teacher_classifier(teacher_out.feats[-1]), teacher_out.logits, atol=1e-5)
    terms = method.train()(student(x, return_features=True), teacher_out, {})
    assert all(torch.isfinite(t) for t in terms.values())


def test_setup_errors_for_heads_that_are_not_one_linear():
    student = create_model("resnet8", num_classes=4)
    mlp_head = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    with pytest.raises(IncompatibleSetupError, match="single nn.Linear") as err:
        make_method("srrl", student, HeadSwap(create_model("resnet8", num_classes=4), mlp_head))
    assert "srrl" in str(err.value) and str(err.value).count(". ") == 0
    relu_head = nn.Sequential(nn.Linear(64, 4), nn.ReLU())  # one Linear, but not the whole map to the logits
    with torch.no_grad():
        relu_head[0].bias.fill_(-0.5)
    with pytest.raises(IncompatibleSetupError, match="does not reproduce"):
        make_method("srrl", student, HeadSwap(create_model("resnet8", num_classes=4), relu_head))
    # token features are fine for SRRL: it reads only the pooled vector
    assert isinstance(make_method("srrl", student, TokenModel()), SRRL)


def test_training_run_lowers_srrl_terms(tmp_path):
    train, _ = learnable_datasets(n_train=128, n_eval=32)
    torch.manual_seed(0)
    teacher = create_model("resnet8x4", num_classes=4).eval()  # built before the student (init_seed=None below)
    trainer = tiny_trainer(tmp_path, "srrl", teacher=teacher, train_dataset=train, init_seed=None,
                           lr_scheduler_type="constant", num_train_epochs=3)
    assert (trainer.model.weights.cls, trainer.model.weights.div, trainer.model.weights.beta) == (1.0, 1.0, 1.0)
    logs = logs_after_training(trainer, "srrl_feature")
    for key in ("loss", "loss_srrl_feature", "loss_srrl_logit"):
        assert_falls(logs, key, count=3)
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in teacher.parameters())


def test_build_without_example_batch_probes_the_students_input_size():
    # an evaluation-only trainer has no example batch: zeros at the student's declared 3 x 32 x 32 size stand in
    student, teacher = create_model("resnet8", num_classes=4), create_model("resnet8x4", num_classes=4)
    method = build_method("srrl", student, teacher, method_config(), None)
    conv = method.transfer[0]
    assert (conv.in_channels, conv.out_channels) == (64, 256)  # resnet8's and resnet8x4's pooled widths
    assert torch.equal(method.teacher_classifier.weight, teacher.classifier.weight)
    student.input_size = None  # and a student that declares none cannot be sized at all
    with pytest.raises(RecipeError) as err:
        build_method("srrl", student, teacher, method_config(), None)
    assert str(err.value) == no_input_size_refusal("srrl")
