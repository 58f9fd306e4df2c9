"""Helpers shared by the method tests: configs, stand-in models, gradient and trainer runs, and hand computations.

The hand computations (softmax, KL, pooling, convolutions, ...) are written with loops, ``math`` and numpy, never
with the library's own code, so the tests compare the implementation against something independent of it.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from torch import nn

from hfkd.config import DistillationConfig
from hfkd.distillation_model import DistillationModel, LossWeights
from hfkd.errors import IncompatibleSetupError
from hfkd.methods import METHODS, build_method
from hfkd.models import ClassifierOutput, create_model
from hfkd.trainer import DistillationTrainer

from tests.conftest import learnable_datasets

# ---- configs and building methods -------------------------------------------------------------------------------


def method_config(tmp_path=None, **overrides) -> DistillationConfig:
    """A small-run DistillationConfig (2 epochs of batch 32, lr 0.05, no saving or evaluation, logs every epoch)."""
    values = dict(
        output_dir=str(tmp_path / "out") if tmp_path is not None else "/tmp/hfkd-method-test",
        num_train_epochs=2,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=64,
        learning_rate=0.05,
        lr_decay_epochs=[],
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="epoch",
        disable_tqdm=True,
        report_to="none",
        seed=0,
    )
    values.update(overrides)
    return DistillationConfig(**values)


def example(batch: int = 2) -> dict[str, torch.Tensor]:
    """A random CIFAR-sized example batch ``{"pixel_values": [batch, 3, 32, 32]}`` for building methods."""
    return {"pixel_values": torch.randn(batch, 3, 32, 32)}


def make_method(
    name: str, student: nn.Module, teacher: nn.Module, batch: dict | None = None, *, train_dataset=None, **config
):
    """``name`` built through build_method for the given models from ``batch`` (default a fresh ``example()``) and
    ``train_dataset`` (the prepared training set; only CRD reads it)."""
    batch = batch if batch is not None else example()
    return build_method(name, student, teacher, method_config(**config), batch, train_dataset=train_dataset)


def no_input_size_refusal(method: str, model: str = "student") -> str:
    """The sentence a probing build refuses with when there is no example batch and ``model`` ("student" /
    "teacher") declares no input size (``hfkd.methods.components.probing.example_pixels``)."""
    return (
        f"{method} sizes its modules from a training batch, but the trainer was given no train_dataset and the {model} "
        "declares no input size; pass train_dataset"
    )


@functools.cache
def zoo_model(name: str) -> nn.Module:
    """A CIFAR-100 zoo model, built once per session (building a method only probes it in eval mode)."""
    return create_model(name, num_classes=100)


def default_weights(name: str) -> tuple[float, float, float]:
    """The (cls, div, beta) defaults of the registered method ``name``."""
    cls = METHODS[name]
    return cls.default_cls, cls.default_div, cls.default_beta


# ---- stand-in models and outputs ----------------------------------------------------------------------------------


def outputs(feats: list[torch.Tensor], logits: torch.Tensor | None = None) -> ClassifierOutput:
    """A model output carrying the given feature list (and logits, zeros ``[B, 4]`` unless given)."""
    logits = logits if logits is not None else torch.zeros(feats[0].shape[0], 4)
    return ClassifierOutput(logits=logits, feats=feats)


class TokenModel(nn.Module):
    """A stand-in for a transformer: its features are token sequences ``[B, N, D]``, not ``[C, H, W]`` maps."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(3 * 8 * 8, 4 * 16)
        self.classifier = nn.Linear(16, num_classes)
        self.num_classes = num_classes

    def forward(self, pixel_values: torch.Tensor, return_features: bool = False) -> ClassifierOutput:
        small = nn.functional.adaptive_avg_pool2d(pixel_values, 8).flatten(1)
        tokens = self.embed(small).view(-1, 4, 16)
        pooled = tokens.mean(1)
        feats = [tokens, tokens, tokens, pooled] if return_features else None
        return ClassifierOutput(logits=self.classifier(pooled), feats=feats)


class ShapeModel(nn.Module):
    """Returns random features of the given per-sample shapes (for set-ups no zoo model produces).

    It declares no input size unless ``input_size`` (a model attribute, as the zoo's) or ``pretrained_cfg`` (timm's
    dict) is given.
    """

    def __init__(self, shapes: list[tuple[int, ...]], num_classes: int = 4, input_size=None,
                 pretrained_cfg=None) -> None:
        super().__init__()
        self.shapes = shapes
        self.classifier = nn.Linear(shapes[-1][0], num_classes)
        self.num_classes = num_classes
        if input_size is not None:
            self.input_size = input_size
        if pretrained_cfg is not None:
            self.pretrained_cfg = pretrained_cfg

    def forward(self, pixel_values: torch.Tensor, return_features: bool = False) -> ClassifierOutput:
        feats = [torch.randn(pixel_values.shape[0], *shape) for shape in self.shapes]
        return ClassifierOutput(logits=self.classifier(feats[-1]), feats=feats if return_features else None)


class HeadSwap(nn.Module):
    """A zoo model whose ``classifier`` is replaced (to build teachers whose head is not one Linear on pooled)."""

    def __init__(self, base: nn.Module, head: nn.Module, logit_scale: float = 1.0) -> None:
        super().__init__()
        self.base, self.head, self.logit_scale = base, head, logit_scale

    @property
    def classifier(self) -> nn.Module:
        return self.head

    def forward(self, pixel_values: torch.Tensor, return_features: bool = False) -> ClassifierOutput:
        feats = self.base(pixel_values, return_features=True).feats
        return ClassifierOutput(self.head(feats[-1]) * self.logit_scale, feats if return_features else None)


# TokenModel's feats[1:-1]: two [4, 16] token sequences; feats[1] and feats[-2] one of them
ONE_TOKEN_SEQUENCE, TWO_TOKEN_SEQUENCES = "[(4, 16)]", "[(4, 16), (4, 16)]"


def assert_needs_feature_maps(name: str, token_side: str, features: str, shapes: str = ONE_TOKEN_SEQUENCE) -> None:
    """Building ``name`` with a TokenModel as ``token_side`` ("student" / "teacher") and resnet8 as the other is
    refused in one whole sentence that names the ``features`` it reads (e.g. "the hint feats[1]") and their
    ``shapes``."""
    zoo = create_model("resnet8", num_classes=4)
    student, teacher = (TokenModel(), zoo) if token_side == "student" else (zoo, TokenModel())
    with pytest.raises(IncompatibleSetupError) as err:
        make_method(name, student, teacher)
    assert str(err.value) == (
        f"{name} needs {features} of the {token_side} to be feature maps [C, H, W], but they have shapes {shapes}; "
        f"use a convolutional {token_side} or a method that reads pooled features or logits (kd, crd, rkd, pkt, dist)"
    )


# ---- gradients ------------------------------------------------------------------------------------------------------


def gradient_run(name: str, student_name: str = "resnet8", teacher_name: str = "resnet8x4", batch: int = 4,
                 term: str | None = None, **config):
    """The method's loss ``term`` (default ``name``) and backward on zoo models; returns (student, teacher, method,
    loss)."""
    torch.manual_seed(0)
    student = create_model(student_name, num_classes=4).train()
    teacher = create_model(teacher_name, num_classes=4).eval()
    x = torch.randn(batch, 3, 32, 32)
    method = make_method(name, student, teacher, {"pixel_values": x[:2]}, **config).train()
    student_out = student(x, return_features=True)
    with torch.no_grad():
        teacher_out = teacher(x, return_features=True)
    loss = method(student_out, teacher_out, {"pixel_values": x})[term or name]
    loss.backward()
    return student, teacher, method, loss


def backward_through_model(student, teacher, method, pixel_values, labels, **batch) -> dict:
    """DistillationModel with the method's terms alone (cls 0, div 0, beta 1), then backward; returns its outputs."""
    model = DistillationModel(student, method, LossWeights(cls=0.0, div=0.0, beta=1.0)).train()
    with torch.no_grad():
        teacher_out = teacher(pixel_values, return_features=True)
    out = model(pixel_values, labels, teacher_outputs=teacher_out, **batch)
    out["loss"].backward()
    return out


def model_gradient_run(name: str, student_name: str = "resnet8", teacher_name: str = "resnet8x4", batch: int = 6):
    """``name`` built for a zoo pair and backpropagated through DistillationModel; returns (student, teacher, method,
    outputs)."""
    torch.manual_seed(0)
    student, teacher = create_model(student_name, num_classes=4), create_model(teacher_name, num_classes=4).eval()
    images = torch.randn(batch, 3, 32, 32)
    method = make_method(name, student, teacher, {"pixel_values": images})
    out = backward_through_model(student, teacher, method, images, torch.zeros(batch, dtype=torch.int64))
    return student, teacher, method, out


def assert_gradients(student: nn.Module, teacher: nn.Module, trainable: nn.Module) -> None:
    """The student's stem conv (its first parameter) and every parameter of ``trainable`` get a non-zero gradient;
    the teacher gets none."""
    stem = next(student.parameters())
    assert stem.grad is not None and stem.grad.abs().sum() > 0
    for name, param in trainable.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in teacher.parameters())


def assert_only_term_trains(student, teacher, method, out, name: str) -> None:
    """DistillationModel computed ``name``'s term alone, and its gradient reached the stem and every method
    parameter but neither the student's classifier (the term does not read the logits) nor the teacher."""
    assert set(out["terms"]) == {name}
    assert_gradients(student, teacher, method)
    assert student.classifier.weight.grad is None


def assert_fp32_under_autocast(compute, expected: float, *inputs) -> None:
    """``compute(*inputs)`` under bf16 autocast returns an fp32 value equal to ``expected`` (rel 1e-5)."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = compute(*inputs)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(expected, rel=1e-5)


def assert_map_method_fp32_under_autocast(make, name: str, seed: int) -> None:
    """A map method under bf16 autocast gives fp32 and the fp32 value of its (bf16-rounded) random [4, 8, 4, 4] maps."""
    g = torch.Generator().manual_seed(seed)
    s, t = (torch.randn(4, 8, 4, 4, generator=g).bfloat16() for _ in range(2))
    feats = lambda x: outputs([x, x, x.float().mean((2, 3))])  # noqa: E731
    reference = make()(feats(s.float()), feats(t.float()), {})[name]
    assert_fp32_under_autocast(lambda a, b: make()(feats(a), feats(b), {})[name], reference.item(), s, t)


# ---- trainer runs ---------------------------------------------------------------------------------------------------


def tiny_trainer(tmp_path, method: str, student="resnet8", teacher="resnet8", train_dataset=None, eval_dataset=None,
                 teacher_classes: int = 4, init_seed: int | None = 0, **overrides) -> DistillationTrainer:
    """A DistillationTrainer for ``method`` on the learnable data (256 by default); models given by name are built,
    student first, after seeding ``init_seed`` (None: the caller seeded), modules are used as they are."""
    if init_seed is not None:
        torch.manual_seed(init_seed)
    if isinstance(student, str):
        student = create_model(student, num_classes=4)
    if isinstance(teacher, str):
        teacher = create_model(teacher, num_classes=teacher_classes)
    return DistillationTrainer(
        model=student,
        teacher=teacher,
        args=method_config(tmp_path, method=method, **overrides),
        train_dataset=train_dataset if train_dataset is not None else learnable_datasets()[0],
        eval_dataset=eval_dataset,
    )


def logs_after_training(trainer: DistillationTrainer, term: str) -> list[dict]:
    """Trains ``trainer`` and returns its log entries that carry ``loss_<term>``."""
    trainer.train()
    return [log for log in trainer.state.log_history if f"loss_{term}" in log]


def train_and_logs(tmp_path, name: str, student="resnet8", teacher="resnet8", **overrides):
    """Two short epochs (2 steps of 32 each, a log every step, constant lr); returns the trainer and its logs."""
    train, _ = learnable_datasets(n_train=64, n_eval=4)
    trainer = tiny_trainer(tmp_path, name, student, teacher, train_dataset=train, logging_strategy="steps",
                           logging_steps=1, lr_scheduler_type="constant", **overrides)
    return trainer, logs_after_training(trainer, name)


def assert_falls(logs: list[dict], key: str, count: int | None = None) -> None:
    """``key`` is in ``count`` logs (at least 3 when None), every value is finite, and the last is below the first."""
    values = [log[key] for log in logs]
    if count is None:
        assert len(values) >= 3, values
    else:
        assert len(values) == count, values
    assert all(np.isfinite(values))
    assert values[-1] < values[0], values


def assert_term_goes_down(trainer, logs, name: str, beta: float | None = None, count: int | None = None) -> None:
    """The method's term is logged and falls from the first to the last log; unset weights took the defaults."""
    cls, div, default_beta = default_weights(name)
    expected_beta = default_beta if beta is None else beta
    weights = trainer.accelerator.unwrap_model(trainer.model).weights  # resolved once; the arguments stay as given
    assert (weights.cls, weights.div, weights.beta) == (cls, div, expected_beta)
    assert_falls(logs, f"loss_{name}", count)


# ---- fixed logits through DistillationModel ------------------------------------------------------------------------

STUDENT = [[2.0, 0.5, -1.0, 0.3], [0.1, 0.2, 0.3, -2.0], [5.0, -3.0, 1.0, 1.0]]
TEACHER = [[3.0, -1.0, 0.0, 0.5], [-0.5, 1.5, 0.2, 0.0], [0.0, 4.0, -4.0, 2.0]]
LABELS = [0, 2, 1]


class FixedStudent(nn.Module):
    """Returns the given logits plus a trainable offset, so gradients can be checked."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits)
        self.offset = nn.Parameter(torch.zeros(len(logits[0])))

    def forward(self, pixel_values, return_features=False):
        return ClassifierOutput(logits=self.logits + self.offset)


def run_with_logits(method, weights: LossWeights, student=STUDENT, teacher=TEACHER, labels=LABELS, epoch: int = 1):
    """DistillationModel (training mode) on a FixedStudent with the teacher's logits given; returns (model, outputs)."""
    model = DistillationModel(FixedStudent(student), method, weights).train()
    out = model(
        torch.zeros(len(student), 3, 4, 4),
        labels=torch.tensor(labels),
        teacher_outputs=ClassifierOutput(logits=torch.tensor(teacher)),
        epoch=epoch,
    )
    return model, out


def assert_only_fixed_student_learns(model, out) -> None:
    """Backpropagating the loss reaches the FixedStudent's offset, and the method has no parameters of its own."""
    out["loss"].backward()
    assert model.student.offset.grad.abs().sum() > 0
    assert sum(p.numel() for p in model.method.parameters()) == 0


# ---- hand computations on lists (math) --------------------------------------------------------------------------


def softmax(row, t=1.0):
    """softmax(row / t) with ``math.exp``."""
    exps = [math.exp(v / t) for v in row]
    return [e / sum(exps) for e in exps]


def kl(p_t, p_s):
    """KL(p_t || p_s) = sum p_t (log p_t - log p_s)."""
    return sum(pt * (math.log(pt) - math.log(ps)) for ps, pt in zip(p_s, p_t))


def hand_ce(logits, labels):
    """Mean cross-entropy of the rows against the labels."""
    return sum(-math.log(softmax(row)[y]) for row, y in zip(logits, labels)) / len(labels)


def hand_kd(student, teacher, t):
    """T^2 * (1/B) * sum_b KL(softmax(teacher_b / T) || softmax(student_b / T))."""
    total = sum(kl(softmax(t_row, t), softmax(s_row, t)) for s_row, t_row in zip(student, teacher))
    return t * t * total / len(student)


def hand_z(row):
    """(z - mean) / (1e-7 + std) with the unbiased, 1/(C-1), std."""
    mean = sum(row) / len(row)
    std = math.sqrt(sum((v - mean) ** 2 for v in row) / (len(row) - 1))
    return [(v - mean) / (1e-7 + std) for v in row]


def dot(a, b):
    """The dot product of two lists."""
    return sum(x * y for x, y in zip(a, b))


def unit(v):
    """``v`` divided by its L2 norm (a zero vector stays zero)."""
    norm = math.sqrt(dot(v, v))
    return [x / norm for x in v] if norm > 0 else [0.0] * len(v)


def linear(weight, bias, x):
    """``weight @ x + bias`` on lists."""
    return [dot(row, x) + b for row, b in zip(weight, bias)]


# ---- hand computations on arrays (numpy) --------------------------------------------------------------------------


def numpy(t: torch.Tensor) -> np.ndarray:
    """A tensor as a float64 numpy array (detached)."""
    return t.detach().double().numpy()


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0)."""
    return np.maximum(x, 0.0)


def block_mean(x: np.ndarray, size: int) -> np.ndarray:
    """Average-pool ``[B, C, H, W]`` to ``size x size`` with explicit loops over equal blocks."""
    kh, kw = x.shape[-2] // size, x.shape[-1] // size
    out = np.zeros((*x.shape[:2], size, size))
    for i in range(size):
        for j in range(size):
            out[:, :, i, j] = x[:, :, kh * i : kh * i + kh, kw * j : kw * j + kw].mean(axis=(2, 3))
    return out


def np_conv(x: np.ndarray, w: np.ndarray, pad: int) -> np.ndarray:
    """Cross-correlation with zero padding and stride 1, no bias: ``[N, C, H, W] * [O, C, k, k]``."""
    k = w.shape[-1]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    h, v = xp.shape[2] - k + 1, xp.shape[3] - k + 1
    out = np.zeros((x.shape[0], w.shape[0], h, v))
    for dy in range(k):
        for dx in range(k):
            out += np.einsum("nchw,oc->nohw", xp[:, :, dy : dy + h, dx : dx + v], w[:, :, dy, dx])
    return out


def np_bn(x: np.ndarray, state: dict, prefix: str, train: bool, eps: float = 1e-5) -> np.ndarray:
    """BatchNorm2d: batch statistics (biased variance) in training, running statistics in evaluation."""
    if train:
        mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    else:
        mean, var = numpy(state[prefix + "running_mean"]), numpy(state[prefix + "running_var"])
    shape = (1, -1, 1, 1)
    normed = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return normed * numpy(state[prefix + "weight"]).reshape(shape) + numpy(state[prefix + "bias"]).reshape(shape)


def randomize_batchnorm(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN affine parameters and running statistics, so the hand computation exercises them."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)

