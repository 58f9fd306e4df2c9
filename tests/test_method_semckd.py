"""SemCKD (spec 2.7, 8.11): module layout and naming, the loss against a numpy loop over (b, i, j) for full and
partial batches, gradients (the attention is not detached), the parameter count, set-up errors and a training run
whose last batch is partial."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hfkd.errors import IncompatibleSetupError, RecipeError
from hfkd.methods import METHODS, build_method
from hfkd.methods.semckd import SemCKD
from hfkd.models import ClassifierOutput, create_model

from tests.conftest import learnable_datasets
from tests.method_helpers import (
    TWO_TOKEN_SEQUENCES,
    assert_falls,
    assert_gradients,
    assert_needs_feature_maps,
    block_mean,
    default_weights,
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

# ---- numpy SemCKD from the spec -------------------------------------------------------------------------------------


def np_embed(x: np.ndarray, state: dict, prefix: str) -> np.ndarray:
    """MLPEmbed: Linear -> ReLU -> Linear -> L2 normalise each row."""
    h = relu(x @ numpy(state[prefix + "linear1.weight"]).T + numpy(state[prefix + "linear1.bias"]))
    out = h @ numpy(state[prefix + "linear2.weight"]).T + numpy(state[prefix + "linear2.bias"])
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def np_proj(x: np.ndarray, state: dict, prefix: str) -> np.ndarray:
    """Proj in training mode: conv1x1, BN, ReLU, conv3x3 pad 1, BN, ReLU, conv1x1 (no final BN / ReLU)."""
    x = relu(np_bn(np_conv(x, numpy(state[prefix + "0.weight"]), 0), state, prefix + "1.", train=True))
    x = relu(np_bn(np_conv(x, numpy(state[prefix + "3.weight"]), 1), state, prefix + "4.", train=True))
    return np_conv(x, numpy(state[prefix + "6.weight"]), 0)


def np_semckd(student_maps, teacher_maps, state: dict, batch_size: int, soft: float = 1.0) -> float:
    """sum_{b,i,j} alpha[b,i,j] * mean_{C,H,W}(value - target)^2 / (B' * s_len), with zero-padded similarity rows and
    alpha[b,i,:] = softmax_j(<q_i[b], k_j[b]> / soft)."""
    fs, ft = [numpy(f) for f in student_maps], [numpy(f) for f in teacher_maps]
    real = fs[0].shape[0]

    def embed(f, prefix):
        flat = f.reshape(real, -1)
        padded = np.zeros((real, batch_size))
        padded[:, :real] = flat @ flat.T  # absent samples have similarity 0
        return np_embed(padded, state, prefix)

    queries = [embed(f, f"query.{i}.") for i, f in enumerate(fs)]
    keys = [embed(f, f"key.{j}.") for j, f in enumerate(ft)]
    total = 0.0
    for i, f_s in enumerate(fs):
        per_pair = []
        for j, f_t in enumerate(ft):
            hs, ht = f_s.shape[2], f_t.shape[2]
            source, target = (block_mean(f_s, ht), f_t) if hs > ht else (f_s, block_mean(f_t, hs))
            value = np_proj(source, state, f"regressor.{i}.{j}.regressor.")
            per_pair.append(((value - target) ** 2).reshape(real, -1).mean(axis=1))
        for b in range(real):
            energy = [float(queries[i][b] @ keys[j][b]) / soft for j in range(len(ft))]
            weights = np.exp(energy) / np.exp(energy).sum()
            total += sum(weights[j] * per_pair[j][b] for j in range(len(ft)))
    return total / (real * len(fs))


def small_method(batch_size: int = 8) -> SemCKD:
    torch.manual_seed(0)
    method = SemCKD(batch_size, student_channels=[2, 3], teacher_channels=[2, 3, 2])
    randomize_batchnorm(method)
    return method.train()


def small_maps(real: int, seed: int = 4):
    g = torch.Generator().manual_seed(seed)
    student = [torch.randn(real, 2, 4, 4, generator=g) * 0.5, torch.rand(real, 3, 2, 2, generator=g)]
    teacher = [torch.rand(real, 2, 2, 2, generator=g), torch.randn(real, 3, 4, 4, generator=g) * 0.5,
               torch.rand(real, 2, 1, 1, generator=g)]
    return student, teacher


def with_ends(maps):
    """A feature list [f0, maps..., pooled] around the stage maps."""
    return [maps[0], *maps, maps[-1].mean((2, 3))]


# ---- layout ---------------------------------------------------------------------------------------------------------


def test_layout_and_unambiguous_names():
    method = SemCKD(64, student_channels=[16, 32], teacher_channels=[8, 24, 40])
    assert default_weights("semckd") == (1, 1, 400)
    assert METHODS["semckd"] is SemCKD
    embed = method.query[0]
    assert (embed.linear1.in_features, embed.linear1.out_features, embed.linear2.out_features) == (64, 32, 16)
    assert not hasattr(embed, "regressor")  # the reference's unused Linears are not created
    proj = method.regressor[1][2].regressor
    convs = [proj[i] for i in (0, 3, 6)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.padding[0]) for c in convs] == [
        (32, 80, 1, 0), (80, 80, 3, 1), (80, 40, 1, 0)
    ]
    assert all(c.bias is None for c in convs) and len(proj) == 7  # no final BN / ReLU
    many = SemCKD(8, student_channels=[1] * 11, teacher_channels=[1] * 11)
    keys = set(many.state_dict())
    assert "regressor.1.10.regressor.0.weight" in keys and "regressor.10.1.regressor.0.weight" in keys
    assert len({k for k in keys if k.endswith("regressor.0.weight")}) == 121


def test_parameter_count_resnet8x4_from_resnet32x4():
    student, teacher = create_model("resnet8x4", num_classes=100), create_model("resnet32x4", num_classes=100)
    method = make_method("semckd", student, teacher, per_device_train_batch_size=64)
    ours = sum(p.numel() for p in method.parameters())
    assert ours == 10_233_632
    # the reference's MLPEmbed also holds an unused Linear(64, 32) + Linear(32, 16) in each of its 6 embeddings
    unused = 6 * ((64 * 32 + 32) + (32 * 16 + 16))
    assert round((ours + unused) / 1e6, 2) == 10.25  # spec 2.7's count


# ---- loss against numpy ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("real", [8, 5])  # a full batch, and a partial one zero-padded to the configured 8
def test_loss_matches_numpy_loop(real):
    method = small_method(batch_size=8)
    student, teacher = small_maps(real)
    state = {k: v.clone() for k, v in method.state_dict().items()}
    loss = method(outputs(with_ends(student)), outputs(with_ends(teacher)), {})["semckd"]
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(np_semckd(student, teacher, state, batch_size=8), rel=1e-5)


def test_batch_larger_than_configured_is_one_sentence_error():
    method = small_method(batch_size=8)
    student, teacher = small_maps(9)
    with pytest.raises(IncompatibleSetupError, match="at most per_device_train_batch_size=8") as err:
        method(outputs(with_ends(student)), outputs(with_ends(teacher)), {})
    assert str(err.value).count(". ") == 0


# ---- gradients ------------------------------------------------------------------------------------------------------


def test_gradients_reach_student_regressors_and_attention_mlps():
    student, teacher, method, _ = gradient_run("semckd", batch=6, per_device_train_batch_size=8)
    # every method parameter, queries/keys too (the attention is not detached); not the teacher
    assert_gradients(student, teacher, method)


# ---- set-up errors and a training run -------------------------------------------------------------------------------


def test_setup_errors():
    with pytest.raises(IncompatibleSetupError, match="at least 4"):
        make_method("semckd", create_model("resnet8", num_classes=4), create_model("resnet8", num_classes=4),
                    per_device_train_batch_size=2)


def test_training_run_with_partial_last_batch_lowers_loss(tmp_path):
    train, _ = learnable_datasets(n_train=112, n_eval=32)  # batches of 32, 32, 32 and a partial 16
    torch.manual_seed(0)
    teacher = create_model("resnet8", num_classes=4).eval()  # built before the student (init_seed=None below)
    trainer = tiny_trainer(tmp_path, "semckd", teacher=teacher, train_dataset=train, init_seed=None)
    assert (trainer.model.weights.cls, trainer.model.weights.div, trainer.model.weights.beta) == (1.0, 1.0, 400.0)
    logs = logs_after_training(trainer, "semckd")
    assert trainer.state.global_step == 8  # the partial batch was trained, not dropped
    assert_falls(logs, "loss_semckd", count=2)
    assert_falls(logs, "loss", count=2)


# ---- mutation survivors (issue 21): soft, one stage map, build inputs and whole refusal sentences ----------------


@pytest.mark.parametrize(
    "student_count, soft",
    [
        (1, 1.0),  # one student stage map (a one-stage student): s_len = 1
        (2, 0.5),  # a temperature other than the reference's default soft = 1 (SimKD's train_student.py, -s 1.0)
    ],
)
def test_loss_matches_numpy_loop_for_one_student_map_and_another_soft(student_count, soft):
    torch.manual_seed(0)
    method = SemCKD(8, student_channels=[2, 3][:student_count], teacher_channels=[2, 3, 2], soft=soft)
    randomize_batchnorm(method)
    method.train()
    student, teacher = small_maps(6)
    student = student[:student_count]
    state = {k: v.clone() for k, v in method.state_dict().items()}
    loss = method(outputs(with_ends(student)), outputs(with_ends(teacher)), {})["semckd"]
    expected = np_semckd(student, teacher, state, batch_size=8, soft=soft)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def module_shapes(method) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in method.state_dict().items()}


def test_build_without_example_batch_probes_the_students_input_size():
    # an evaluation-only trainer has no example batch: zeros at the student's declared 3 x 32 x 32 size stand in
    student, teacher = create_model("resnet8", num_classes=4), create_model("resnet8x4", num_classes=4)
    config = method_config(per_device_train_batch_size=8)
    without = build_method("semckd", student, teacher, config, None)
    with_batch = build_method("semckd", student, teacher, config, example())
    assert module_shapes(without) == module_shapes(with_batch)
    assert (len(without.query), len(without.key)) == (3, 3)
    assert without.regressor[2][2].regressor[0].weight.shape == (512, 64, 1, 1)  # C_s 64 -> 2 * C_t 256


def test_build_uses_the_example_batch_for_a_student_without_input_size():
    student, teacher = create_model("resnet8", num_classes=4), create_model("resnet8", num_classes=4)
    student.input_size = None  # declares no input size: only the example batch can size the modules
    method = make_method("semckd", student, teacher, per_device_train_batch_size=8)
    assert module_shapes(method) == module_shapes(SemCKD(8, [16, 32, 64], [16, 32, 64]))
    with pytest.raises(RecipeError) as err:
        build_method("semckd", student, teacher, method_config(), None)
    assert str(err.value) == no_input_size_refusal("semckd")


@pytest.mark.parametrize("token_side", ["student", "teacher"])
def test_token_features_are_refused_in_one_whole_sentence(token_side):
    assert_needs_feature_maps("semckd", token_side, "the stage outputs feats[1:-1]", TWO_TOKEN_SEQUENCES)


class StemOnly(nn.Module):
    """A model whose feature list is ``[f0, pooled]``: a stem map and no stage maps feats[1:-1]."""

    input_size = (3, 32, 32)

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, kernel_size=3, padding=1)
        self.classifier = nn.Linear(4, 4)

    def forward(self, pixel_values: torch.Tensor, return_features: bool = False) -> ClassifierOutput:
        f0 = torch.relu(self.stem(pixel_values))
        pooled = f0.mean((2, 3))
        return ClassifierOutput(self.classifier(pooled), [f0, pooled] if return_features else None)


@pytest.mark.parametrize("stemless_side", ["student", "teacher"])
def test_one_side_without_stage_maps_is_refused_in_one_whole_sentence(stemless_side):
    zoo = create_model("resnet8", num_classes=4)
    student, teacher = (StemOnly(), zoo) if stemless_side == "student" else (zoo, StemOnly())
    with pytest.raises(IncompatibleSetupError) as err:
        make_method("semckd", student, teacher)
    assert str(err.value) == (
        "semckd needs at least one stage map feats[1:-1] from both the student and the teacher, but one of them has "
        "none; use models with stage outputs (every CIFAR zoo model) or a logit-based method (kd)"
    )


def test_smallest_batch_size_is_4():
    # MLPEmbed(B, B // 4) (SimKD's models/util.py SelfA, factor 4): B = 4 gives one-dimensional embeddings
    student, teacher = create_model("resnet8", num_classes=4), create_model("resnet8", num_classes=4)
    method = make_method("semckd", student, teacher, per_device_train_batch_size=4)
    assert method.query[0].linear2.out_features == 1 and method.query[0].linear1.in_features == 4
    with pytest.raises(IncompatibleSetupError) as err:
        make_method("semckd", student, teacher, per_device_train_batch_size=3)
    assert str(err.value) == (
        "semckd embeds rows of the B x B sample-similarity matrix into B//4 dimensions, so "
        "per_device_train_batch_size must be at least 4, not 3"
    )
