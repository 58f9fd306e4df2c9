"""CRD (spec 2.6): embeddings, memory banks, the fixed Z, the memory update and the NCE loss, against hand values."""

from __future__ import annotations

import logging
import math
from types import SimpleNamespace

import pytest
import torch

from hfkd.data.contrast import ContrastiveDataset
from hfkd.distillation_model import DistillationModel, LossWeights
from hfkd.errors import RecipeError
from hfkd.methods.crd import CRD, contrast_loss, training_set_size
from hfkd.models import create_model
from hfkd.trainer import example_batch
from tests.method_helpers import (
    assert_fp32_under_autocast,
    assert_only_term_trains,
    backward_through_model,
    dot,
    linear,
    make_method,
    outputs,
    TokenModel,
    tiny_trainer,
    unit,
)

EPS = 1e-7

# ---- hand computation of spec 2.6, in plain Python -----------------------------------------------------------


def hand_nce(x, n_data):
    """``-(1/B)[sum_b log(x_b0/(x_b0 + K Pn + eps)) + sum_{b,j>=1} log(K Pn/(x_bj + K Pn + eps))]``."""
    k = len(x[0]) - 1
    noise = k / n_data
    total = 0.0
    for row in x:
        total += math.log(row[0] / (row[0] + noise + EPS))
        total += sum(math.log(noise / (v + noise + EPS)) for v in row[1:])
    return -total / len(x)


class Hand:
    """The reference CRD step written out: scores, Z on the first call, loss, then the memory update."""

    def __init__(self, method: CRD):
        self.ws, self.bs = method.embed_s.linear.weight.tolist(), method.embed_s.linear.bias.tolist()
        self.wt, self.bt = method.embed_t.linear.weight.tolist(), method.embed_t.linear.bias.tolist()
        self.mem1 = method.contrast.memory_v1.tolist()
        self.mem2 = method.contrast.memory_v2.tolist()
        self.t, self.m, self.n = method.contrast.temperature, method.contrast.momentum, len(self.mem1)
        self.z1 = self.z2 = None

    def step(self, f_s, f_t, index, contrast_index):
        v1 = [unit(linear(self.ws, self.bs, f)) for f in f_s]
        v2 = [unit(linear(self.wt, self.bt, f)) for f in f_t]
        out_v1 = [[math.exp(dot(self.mem2[j], v1[b]) / self.t) for j in row] for b, row in enumerate(contrast_index)]
        out_v2 = [[math.exp(dot(self.mem1[j], v2[b]) / self.t) for j in row] for b, row in enumerate(contrast_index)]
        if self.z1 is None:
            count = len(out_v1) * len(out_v1[0])
            self.z1 = sum(map(sum, out_v1)) / count * self.n
            self.z2 = sum(map(sum, out_v2)) / count * self.n
        x1 = [[v / self.z1 for v in row] for row in out_v1]
        x2 = [[v / self.z2 for v in row] for row in out_v2]
        loss = hand_nce(x1, self.n) + hand_nce(x2, self.n)
        for b, i in enumerate(index):
            self.mem1[i] = unit([self.m * a + (1 - self.m) * c for a, c in zip(self.mem1[i], v1[b])])
            self.mem2[i] = unit([self.m * a + (1 - self.m) * c for a, c in zip(self.mem2[i], v2[b])])
        return loss


def pair_outputs(f_s, f_t):
    """Student and teacher outputs whose pooled vectors (feats[-1]) are the given rows."""
    return tuple(outputs([torch.zeros(1), torch.tensor(f)], torch.zeros(len(f), 2)) for f in (f_s, f_t))


F_S1, F_T1 = [[0.5, -1.0], [2.0, 0.3]], [[0.1, 0.4, -0.2], [1.0, 0.0, 0.7]]
F_S2, F_T2 = [[-0.3, 0.8], [1.1, 1.2]], [[0.9, -0.4, 0.2], [0.3, 0.3, -0.6]]
INDEX1, CONTRAST1 = [1, 3], [[1, 0, 2], [3, 4, 0]]
INDEX2, CONTRAST2 = [4, 0], [[4, 1, 3], [0, 2, 1]]


def small_crd() -> CRD:
    torch.manual_seed(7)
    # an asymmetric momentum: with 0.5, swapping m and 1 - m in the memory update would change nothing
    return CRD(student_dim=2, teacher_dim=3, n_data=5, feat_dim=3, temperature=0.5, momentum=0.3)


def test_contrast_loss_matches_the_formula():
    x = [[0.9, 0.05, 0.2], [0.3, 0.01, 0.6]]
    assert contrast_loss(torch.tensor(x), n_data=10).item() == pytest.approx(hand_nce(x, 10), rel=1e-6)
    # scores and noise as small as eps (K P_n = 1e-7): the reference's + eps keeps every log finite
    tiny = [[1e-7, 0.0]]
    assert contrast_loss(torch.tensor(tiny), n_data=10**7).item() == pytest.approx(hand_nce(tiny, 10**7), rel=1e-5)


def test_two_steps_match_the_reference_computation_and_z_stays_fixed():
    method = small_crd()
    hand = Hand(method)
    # the memory starts as un-normalised uniform noise in [-s, s], s = 1/sqrt(dim/3) = 1
    assert method.contrast.memory_v1.abs().max() <= 1.0
    assert not torch.allclose(method.contrast.memory_v1.norm(dim=1), torch.ones(5))
    assert method.contrast.z_v1.item() == -1 and method.contrast.z_v2.item() == -1

    batch = {"index": torch.tensor(INDEX1), "contrast_index": torch.tensor(CONTRAST1)}
    loss = method(*pair_outputs(F_S1, F_T1), batch)["crd"]
    assert loss.shape == () and loss.dtype == torch.float32
    assert loss.item() == pytest.approx(hand.step(F_S1, F_T1, INDEX1, CONTRAST1), rel=1e-5)
    assert method.contrast.z_v1.item() == pytest.approx(hand.z1, rel=1e-5)
    assert method.contrast.z_v2.item() == pytest.approx(hand.z2, rel=1e-5)
    assert torch.allclose(method.contrast.memory_v1, torch.tensor(hand.mem1), atol=1e-6)
    assert torch.allclose(method.contrast.memory_v2, torch.tensor(hand.mem2), atol=1e-6)

    z1, z2 = method.contrast.z_v1.item(), method.contrast.z_v2.item()
    batch = {"index": torch.tensor(INDEX2), "contrast_index": torch.tensor(CONTRAST2)}
    loss = method(*pair_outputs(F_S2, F_T2), batch)["crd"]
    assert loss.item() == pytest.approx(hand.step(F_S2, F_T2, INDEX2, CONTRAST2), rel=1e-5)
    assert method.contrast.z_v1.item() == z1 and method.contrast.z_v2.item() == z2  # fixed after the first batch


def test_memory_update_touches_only_the_batch_rows():
    method = small_crd()
    before_v1, before_v2 = method.contrast.memory_v1.clone(), method.contrast.memory_v2.clone()
    with torch.no_grad():
        v1 = torch.nn.functional.normalize(method.embed_s(torch.tensor(F_S1)), dim=1)
        v2 = torch.nn.functional.normalize(method.embed_t(torch.tensor(F_T1)), dim=1)
    method(*pair_outputs(F_S1, F_T1), {"index": torch.tensor(INDEX1), "contrast_index": torch.tensor(CONTRAST1)})
    rows = torch.tensor(INDEX1)
    for memory, before, v in ((method.contrast.memory_v1, before_v1, v1), (method.contrast.memory_v2, before_v2, v2)):
        expected = 0.3 * before[rows] + 0.7 * v  # momentum 0.3 keeps 30 % of the old row
        expected = expected / expected.norm(dim=1, keepdim=True)
        assert torch.allclose(memory[rows], expected, atol=1e-6)
        untouched = torch.tensor([0, 2, 4])
        assert torch.equal(memory[untouched], before[untouched])


def test_memory_and_z_are_checkpointed_buffers_not_parameters():
    method = small_crd()
    method(*pair_outputs(F_S1, F_T1), {"index": torch.tensor(INDEX1), "contrast_index": torch.tensor(CONTRAST1)})
    state = method.state_dict()
    for key in ("contrast.memory_v1", "contrast.memory_v2", "contrast.z_v1", "contrast.z_v2"):
        assert key in state
    assert {name for name, _ in method.named_parameters()} == {
        "embed_s.linear.weight", "embed_s.linear.bias", "embed_t.linear.weight", "embed_t.linear.bias",
    }
    model = DistillationModel(create_model("resnet8", num_classes=2), method, LossWeights())
    assert "method.contrast.memory_v1" in model.state_dict()
    restored = small_crd()
    restored.load_state_dict(state)
    assert torch.equal(restored.contrast.memory_v2, method.contrast.memory_v2)
    assert restored.contrast.z_v1.item() == method.contrast.z_v1.item() > 0


def test_loss_is_fp32_under_bf16_autocast():
    method = small_crd()
    f_s, f_t = pair_outputs(F_S1, F_T1)
    f_s.feats[-1], f_t.feats[-1] = f_s.feats[-1].bfloat16(), f_t.feats[-1].bfloat16()
    # the embeddings and scores run in fp32 on the (bf16-rounded) features, not in bf16
    hand = Hand(method).step(f_s.feats[-1].float().tolist(), f_t.feats[-1].float().tolist(), INDEX1, CONTRAST1)
    batch = {"index": torch.tensor(INDEX1), "contrast_index": torch.tensor(CONTRAST1)}
    assert_fp32_under_autocast(lambda: method(f_s, f_t, batch)["crd"], hand)
    assert method.contrast.memory_v1.dtype == torch.float32


def test_build_sizes_embeddings_and_memory_from_the_wrapped_example_batch(learnable_data):
    train = ContrastiveDataset(learnable_data[0], nce_k=100)
    batch = example_batch(train, lambda items: items)
    student, teacher = create_model("resnet8", num_classes=4), create_model("resnet8x4", num_classes=4)
    method = make_method("crd", student, teacher, batch, train_dataset=train, crd_feat_dim=32, crd_nce_t=0.1,
                         crd_nce_m=0.3)
    assert (method.contrast.temperature, method.contrast.momentum) == (0.1, 0.3)  # the recipe's, not the defaults
    assert method.embed_s.linear.weight.shape == (32, 64) and method.embed_t.linear.weight.shape == (32, 256)
    assert method.contrast.memory_v1.shape == (256, 32) and method.contrast.memory_v2.shape == (256, 32)
    assert sum(p.numel() for p in method.parameters()) == (64 * 32 + 32) + (256 * 32 + 32)
    with pytest.raises(RecipeError, match="prepare_train_dataset"):
        make_method("crd", student, teacher, example_batch(learnable_data[0], lambda b: b))


def test_gradients_reach_student_and_both_embeddings_only(learnable_data):
    train = ContrastiveDataset(learnable_data[0], nce_k=16)
    batch = train.__getitems__(list(range(8)))
    student, teacher = create_model("resnet8", num_classes=4), create_model("resnet8", num_classes=4).eval()
    method = CRD.build(student, teacher, SimpleNamespace(crd_feat_dim=128, crd_nce_t=0.07, crd_nce_m=0.5), batch,
                       train_dataset=train)
    out = backward_through_model(student, teacher, method, batch["pixel_values"], batch["labels"],
                                 index=batch["index"], contrast_index=batch["contrast_index"])
    assert all(p.grad is not None for p in student.parameters() if p.dim() > 1 and p is not student.classifier.weight)
    assert_only_term_trains(student, teacher, method, out, "crd")  # both embeddings too; the logits are never read


def test_crd_trains_end_to_end_with_adapted_nce_k(tmp_path, learnable_data, caplog, trained_teacher):
    teacher = trained_teacher
    with caplog.at_level(logging.WARNING, logger="hfkd.data.contrast"):
        trainer = tiny_trainer(tmp_path, "crd", teacher=teacher, train_dataset=learnable_data[0], num_train_epochs=3)
    assert [r.getMessage() for r in caplog.records if "nce_k=192" in r.getMessage()]
    assert trainer.train_dataset.nce_k == 192 and (trainer.model.weights.cls, trainer.model.weights.div, trainer.model.weights.beta) == (1, 1, 0.8)
    trainer.train()
    crd = [h["loss_crd"] for h in trainer.state.log_history if "loss_crd" in h]
    assert len(crd) == 3 and all(math.isfinite(v) for v in crd)
    # epoch 1 scores against the noise the memory starts with; from epoch 2 every row holds an embedding
    assert crd[2] < crd[1]
    contrast = trainer.model.method.contrast
    assert contrast.z_v1.item() > 0 and contrast.z_v2.item() > 0
    assert torch.allclose(contrast.memory_v1.norm(dim=1), torch.ones(256), atol=1e-5)  # every row was updated


def test_defaults_and_the_initial_memory_are_the_references():
    # RepDistiller's train_student.py: --feat_dim 128, --nce_t 0.07, --nce_m 0.5; its ContrastMemory draws both
    # memories uniformly from [-1/sqrt(dim/3), +1/sqrt(dim/3)] (stdv = 1 / sqrt(inputSize / 3))
    torch.manual_seed(0)
    crd = CRD(student_dim=8, teacher_dim=16, n_data=4000)
    memory = crd.contrast
    assert (memory.memory_v1.shape, memory.temperature, memory.momentum) == ((4000, 128), 0.07, 0.5)
    bound = 1.0 / math.sqrt(128 / 3)
    for values in (memory.memory_v1, memory.memory_v2):
        assert values.abs().max().item() <= bound
        # uniform on [-b, b]: both ends reached (512,000 draws) and the mean square is b^2 / 3
        assert values.min().item() < -0.999 * bound and values.max().item() > 0.999 * bound
        assert values.pow(2).mean().item() == pytest.approx(bound**2 / 3, rel=0.01)


def test_training_set_size_reads_n_data_then_the_length_and_refuses_an_unsized_set():
    # n_data first (a ContrastiveDataset's attribute, which need not be its wrapper's len), else len()
    assert training_set_size(SimpleNamespace(n_data=7)) == 7
    assert type(training_set_size(SimpleNamespace(n_data=torch.tensor(7)))) is int
    assert training_set_size([0] * 5) == 5

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            yield {}

    with pytest.raises(RecipeError) as refused:
        training_set_size(Stream())
    assert str(refused.value) == (
        "crd keeps one memory row per training example, but the training set Stream has no length; use a map-style "
        "dataset (datasets.Dataset or hfkd.data.DecodedImageDataset)"
    )


REFUSAL = (
    "crd needs the training set prepared by CRD.prepare_train_dataset (batches with index and contrast_index, and its "
    "size for the memory bank); pass the training set to DistillationTrainer"
)


def test_build_refuses_each_missing_piece_in_one_sentence(learnable_data):
    train = ContrastiveDataset(learnable_data[0], nce_k=16)
    batch = train.__getitems__(list(range(4)))
    student, teacher = create_model("resnet8", num_classes=4), create_model("resnet8", num_classes=4)
    config = SimpleNamespace(crd_feat_dim=8, crd_nce_t=0.07, crd_nce_m=0.5)
    no_contrast = {k: v for k, v in batch.items() if k != "contrast_index"}
    for example, dataset in ((batch, None), (None, train), (no_contrast, train)):
        with pytest.raises(RecipeError) as refused:
            CRD.build(student, teacher, config, example, train_dataset=dataset)
        assert str(refused.value) == REFUSAL
    assert CRD.build(student, teacher, config, batch, train_dataset=train).contrast.n_data == len(train)


def test_prepare_train_dataset_passes_k_mode_and_seed_from_the_recipe(learnable_data):
    config = SimpleNamespace(crd_nce_k=10, crd_mode="relax", seed=3)
    wrapped = CRD.prepare_train_dataset(learnable_data[0], config)
    assert (wrapped.nce_k, wrapped.sampler.mode, wrapped.seed) == (10, "relax", 3)
    assert wrapped.dataset is learnable_data[0]
    # a second preparation wraps the original dataset again, not the wrapper
    assert CRD.prepare_train_dataset(wrapped, config).dataset is learnable_data[0]


def test_build_sizes_from_the_example_batch_a_model_that_declares_no_input_size(learnable_data):
    train = ContrastiveDataset(learnable_data[0], nce_k=16)
    batch = train.__getitems__(list(range(4)))
    config = SimpleNamespace(crd_feat_dim=8, crd_nce_t=0.07, crd_nce_m=0.5)
    method = CRD.build(TokenModel(), TokenModel(), config, batch, train_dataset=train)  # pooled width 16
    assert method.embed_s.linear.weight.shape == (8, 16) and method.embed_t.linear.weight.shape == (8, 16)
