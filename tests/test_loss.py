"""loss = cls * CE + div * KD_T + beta * method, checked against values computed by hand from the formulas."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hfkd.distillation_model import DistillationModel, LossWeights
from hfkd.methods import DistillationMethod, kd_divergence
from hfkd.methods.kd import KD
from hfkd.models import ClassifierOutput

STUDENT = [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]]
TEACHER = [[3.0, -1.0, 0.0], [-0.5, 1.5, 0.2]]
LABELS = [0, 2]


def softmax(row, t=1.0):
    exps = [math.exp(v / t) for v in row]
    return [e / sum(exps) for e in exps]


def hand_ce(logits, labels):
    return sum(-math.log(softmax(row)[y]) for row, y in zip(logits, labels)) / len(labels)


def hand_kd(student, teacher, t):
    """T^2 * (1/B) * sum_b sum_k p_t (log p_t - log p_s): spec section 1.3, written out."""
    total = 0.0
    for s_row, t_row in zip(student, teacher):
        p_s, p_t = softmax(s_row, t), softmax(t_row, t)
        total += sum(pt * (math.log(pt) - math.log(ps)) for ps, pt in zip(p_s, p_t))
    return t * t * total / len(student)


class FixedStudent(nn.Module):
    """Returns the given logits (plus a trainable offset so gradients can be checked)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits)
        self.offset = nn.Parameter(torch.zeros(3))

    def forward(self, pixel_values, return_features=False):
        return ClassifierOutput(logits=self.logits + self.offset, feats=[pixel_values, pixel_values.mean((2, 3))])


class ConstantMethod(DistillationMethod):
    name = "constant_for_test"

    def forward(self, student_out, teacher_out, batch):
        return {"constant": student_out.logits.sum() * 0 + 0.75}


def run(weights, method=None):
    model = DistillationModel(FixedStudent(STUDENT), method, weights).train()
    out = model(
        torch.zeros(2, 3, 4, 4),
        labels=torch.tensor(LABELS),
        teacher_outputs=ClassifierOutput(logits=torch.tensor(TEACHER)),
    )
    return out


@pytest.mark.parametrize("t", [1.0, 4.0])
def test_kd_divergence_matches_hand_computation(t):
    value = kd_divergence(torch.tensor(STUDENT), torch.tensor(TEACHER), t)
    assert value.item() == pytest.approx(hand_kd(STUDENT, TEACHER, t), rel=1e-5)


def test_kd_is_batch_mean_not_sum():
    single = kd_divergence(torch.tensor(STUDENT[:1]), torch.tensor(TEACHER[:1]), 4.0)
    doubled = kd_divergence(torch.tensor(STUDENT[:1] * 2), torch.tensor(TEACHER[:1] * 2), 4.0)
    assert doubled.item() == pytest.approx(single.item(), rel=1e-5)


def test_total_is_weighted_sum_of_terms():
    out = run(LossWeights(cls=0.3, div=0.7, beta=2.0, kd_temperature=4.0), ConstantMethod())
    ce, kd = hand_ce(STUDENT, LABELS), hand_kd(STUDENT, TEACHER, 4.0)
    assert out["terms"]["ce"].item() == pytest.approx(ce, rel=1e-5)
    assert out["terms"]["kd"].item() == pytest.approx(kd, rel=1e-5)
    assert out["terms"]["constant"].item() == pytest.approx(0.75)
    assert out["loss"].item() == pytest.approx(0.3 * ce + 0.7 * kd + 2.0 * 0.75, rel=1e-5)


def test_zero_weight_terms_are_not_computed():
    out = run(LossWeights(cls=0.0, div=1.0, beta=0.0), KD())
    assert set(out["terms"]) == {"kd"}
    out = run(LossWeights(cls=1.0, div=0.0, beta=0.0), ConstantMethod())
    assert set(out["terms"]) == {"ce"}


def test_no_method_trains_with_ce_only():
    model = DistillationModel(FixedStudent(STUDENT), None, LossWeights(cls=1.0)).train()
    out = model(torch.zeros(2, 3, 4, 4), labels=torch.tensor(LABELS))
    assert set(out["terms"]) == {"ce"}
    assert out["loss"].item() == pytest.approx(hand_ce(STUDENT, LABELS), rel=1e-5)


def test_gradient_reaches_student_and_terms_are_detached():
    model = DistillationModel(FixedStudent(STUDENT), KD(), LossWeights(cls=1.0, div=1.0)).train()
    teacher = ClassifierOutput(logits=torch.tensor(TEACHER))
    out = model(torch.zeros(2, 3, 4, 4), labels=torch.tensor(LABELS), teacher_outputs=teacher)
    out["loss"].backward()
    assert model.student.offset.grad.abs().sum() > 0
    assert all(not t.requires_grad for t in out["terms"].values())


def test_eval_mode_needs_no_teacher_and_reports_ce():
    model = DistillationModel(FixedStudent(STUDENT), ConstantMethod(), LossWeights(beta=1.0)).eval()
    out = model(torch.zeros(2, 3, 4, 4), labels=torch.tensor(LABELS))
    assert torch.equal(out["logits"], torch.tensor(STUDENT))
    assert out["loss"].item() == pytest.approx(hand_ce(STUDENT, LABELS), rel=1e-5)


def test_training_a_method_without_teacher_outputs_is_an_error():
    model = DistillationModel(FixedStudent(STUDENT), ConstantMethod(), LossWeights(beta=1.0)).train()
    with pytest.raises(ValueError, match="needs teacher outputs"):
        model(torch.zeros(2, 3, 4, 4), labels=torch.tensor(LABELS))


def hand_smoothed_ce(logits, labels, eps):
    """Label smoothing as torch and the Trainer's LabelSmoother define it: (1 - eps) * CE + eps * mean_k(-log p_k)."""
    total = 0.0
    for row, y in zip(logits, labels):
        log_p = [math.log(p) for p in softmax(row)]
        total += (1 - eps) * -log_p[y] + eps * sum(-v for v in log_p) / len(row)
    return total / len(labels)


def test_label_smoothing_changes_only_the_ce_term():
    plain = run(LossWeights(cls=1.0, div=1.0, beta=2.0), ConstantMethod())
    smoothed = run(LossWeights(cls=1.0, div=1.0, beta=2.0, label_smoothing=0.1), ConstantMethod())
    assert smoothed["terms"]["ce"].item() == pytest.approx(hand_smoothed_ce(STUDENT, LABELS, 0.1), rel=1e-5)
    assert smoothed["terms"]["ce"].item() != pytest.approx(plain["terms"]["ce"].item(), rel=1e-3)
    for term in ("kd", "constant"):  # the div and beta terms see the teacher, not the smoothed labels
        assert smoothed["terms"][term].item() == plain["terms"][term].item()
    evaluated = DistillationModel(FixedStudent(STUDENT), None, LossWeights(label_smoothing=0.1)).eval()
    eval_loss = evaluated(torch.zeros(2, 3, 4, 4), labels=torch.tensor(LABELS))["loss"]
    assert eval_loss.item() == pytest.approx(hand_ce(STUDENT, LABELS), rel=1e-5)  # evaluation reports the plain CE


def test_label_smoothing_factor_reaches_the_loss_from_the_trainer_arguments(tmp_path):
    from hfkd.config import DistillationConfig
    from hfkd.distillation_model import resolve_loss_weights

    from hfkd.models import create_model
    from hfkd.trainer import DistillationTrainer
    from tests.conftest import learnable_datasets

    args = DistillationConfig(output_dir=str(tmp_path), method="kd", label_smoothing_factor=0.1, num_train_epochs=1,
                              per_device_train_batch_size=16, lr_decay_epochs=[], save_strategy="no",
                              disable_tqdm=True)
    assert resolve_loss_weights(args) == LossWeights(cls=1.0, div=1.0, beta=0.0, label_smoothing=0.1)
    train, evaluation = learnable_datasets(n_train=32, n_eval=16)
    trainer = DistillationTrainer(model=create_model("resnet8", num_classes=4),
                                  teacher=create_model("resnet8", num_classes=4), args=args, train_dataset=train,
                                  eval_dataset=evaluation)
    trainer.train()  # the Trainer's own label smoother is never used: hfkd's loss applies it to the cls term only
    logged = [entry for entry in trainer.state.log_history if "loss_ce" in entry]
    assert logged and logged[0]["loss"] == pytest.approx(logged[0]["loss_ce"] + logged[0]["loss_kd"], rel=1e-4)
