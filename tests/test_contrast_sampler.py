"""CRD's data side (spec 5.2): contrast_index rows, the adaptive nce_k, and the training-set wrapper."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import hfkd.data.contrast as contrast
from hfkd.config import DataArguments
from hfkd.data.contrast import (
    NEGATIVE_DRAWS,
    ContrastiveDataset,
    ContrastSampler,
    contrastive_dataset,
    training_labels,
)
from hfkd.data.decoded import DecodedImageDataset
from hfkd.data.keyed_random import keyed_hash
from hfkd.data.pipeline import prepare_datasets
from hfkd.errors import DataError

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
# both ways of drawing a row's negatives, whichever device would pick by default
DRAWS = ["numpy", "keys"]


def unbalanced_labels() -> torch.Tensor:
    """Class sizes 2, 5, 9, 24 (negative pools 38, 35, 31, 16), shuffled."""
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate([2, 5, 9, 24])])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(3))]


@pytest.mark.parametrize("draw", DRAWS)
@pytest.mark.parametrize("device", DEVICES)
def test_exact_rows_are_index_then_distinct_negatives_of_other_classes(device, draw):
    labels = unbalanced_labels()
    sampler = ContrastSampler(labels, nce_k=12, draw=draw)
    assert sampler.nce_k == 12 and sampler.n_data == 40
    index = torch.arange(40, device=device)
    rows = sampler.sample(index, labels[index.cpu()])
    assert rows.shape == (40, 13) and rows.dtype == torch.int64 and rows.device.type == device
    rows = rows.cpu()
    assert torch.equal(rows[:, 0], torch.arange(40))  # the positive comes first, and is the example itself
    for i, row in enumerate(rows.tolist()):
        negatives = row[1:]
        assert len(set(negatives)) == 12  # without replacement within a row
        assert all(0 <= j < 40 and labels[j] != labels[i] for j in negatives)


@pytest.mark.parametrize("draw", DRAWS)
@pytest.mark.parametrize("device", DEVICES)
def test_k_equal_to_the_pool_takes_every_other_class_example(device, draw):
    labels = torch.tensor([0, 0, 1, 1, 1, 2])  # pools: 4, 3, 5, so K = 3 is the whole pool of class 1
    sampler = ContrastSampler(labels, nce_k=3, draw=draw)
    index = torch.tensor([2, 3, 4], device=device)  # class 1: its pool is exactly {0, 1, 5}
    rows = sampler.sample(index, labels[index.cpu()]).cpu()
    for row in rows.tolist():
        assert sorted(row[1:]) == [0, 1, 5]


def test_relax_positive_is_a_random_example_of_the_same_class():
    labels = unbalanced_labels()
    sampler = ContrastSampler(labels, nce_k=8, mode="relax")
    index = torch.arange(40).repeat(20)
    # every example once per epoch, for 20 epochs: each epoch draws its positive afresh
    positives = torch.cat([sampler.sample(index[:40], labels[:40], epoch=e)[:, 0] for e in range(20)])
    assert torch.equal(labels[positives], labels[index])
    assert (positives != index).float().mean() > 0.5  # not the example itself most of the time
    # every member of the biggest class shows up as a positive for that class
    big = (labels == 3).nonzero().flatten()
    assert set(positives[labels[index] == 3].tolist()) == set(big.tolist())


@pytest.mark.parametrize("draw", DRAWS)
def test_draws_are_fresh_each_epoch_and_a_function_of_seed_epoch_and_index(draw):
    labels = unbalanced_labels()
    sampler = ContrastSampler(labels, nce_k=10, draw=draw)
    index = torch.tensor([0, 1, 2, 3])
    first = sampler.sample(index, labels[index], epoch=0)
    assert torch.equal(first, sampler.sample(index, labels[index], epoch=0))  # reproducible (resume, other ranks)
    assert torch.equal(first[2:], sampler.sample(index[2:], labels[index[2:]], epoch=0))  # whatever the batch
    assert not torch.equal(first, sampler.sample(index, labels[index], epoch=1))  # a fresh draw every epoch
    assert not torch.equal(first, sampler.sample(index, labels[index], epoch=0, seed=1))
    assert not torch.equal(first[0, 1:], first[1, 1:])  # examples draw independently


@pytest.mark.parametrize("draw", DRAWS)
def test_negatives_are_uniform_over_the_pool(draw):
    labels = unbalanced_labels()
    sampler = ContrastSampler(labels, nce_k=10, draw=draw)
    anchor = int((labels == 3).nonzero()[0])  # pool of 16 indices, 10 drawn each time
    draws = 4000
    one = torch.tensor([anchor])
    rows = torch.cat([sampler.sample(one, labels[one], epoch=e)[:, 1:] for e in range(draws)])  # one per epoch
    counts = torch.bincount(rows.flatten(), minlength=40).float()
    pool = labels != 3
    assert torch.all(counts[~pool] == 0)
    expected = draws * 10 / 16  # each pool member is in a uniform 10-subset of 16 with probability 10/16
    # binomial sd = sqrt(4000 * 10/16 * 6/16) ~ 31: six sd is ~ 7.5 % of the expectation
    assert torch.all((counts[pool] - expected).abs() < 0.075 * expected)


def test_auto_draws_with_numpy_on_the_cpu_and_an_unknown_draw_is_refused():
    labels = unbalanced_labels()
    index = torch.arange(40)
    drawn = {draw: ContrastSampler(labels, nce_k=12, draw=draw).sample(index, labels) for draw in NEGATIVE_DRAWS}
    assert torch.equal(drawn["auto"], drawn["numpy"])
    assert not torch.equal(drawn["numpy"][:, 1:], drawn["keys"][:, 1:])
    with pytest.raises(ValueError, match="draw 'gpu' is not one of 'auto', 'numpy', 'keys'"):
        ContrastSampler(labels, nce_k=12, draw="gpu")


def test_rows_are_drawn_in_chunks_when_the_key_matrix_would_be_large(monkeypatch):
    monkeypatch.setattr(contrast, "_KEY_BUDGET", 70)  # two rows of 35 keys per chunk
    labels = unbalanced_labels()
    sampler = ContrastSampler(labels, nce_k=16, draw="keys")
    index = torch.arange(40)
    rows = sampler.sample(index, labels)
    for i, row in enumerate(rows.tolist()):
        assert row[0] == i and len(set(row[1:])) == 16 and all(labels[j] != labels[i] for j in row[1:])


def test_nce_k_adapts_to_the_smallest_pool_with_one_warning(caplog, learnable_data):
    train, _ = learnable_data  # 4 classes of 64: every pool holds 192 examples
    with caplog.at_level(logging.WARNING, logger="hfkd.data.contrast"):
        wrapped = contrastive_dataset(train, nce_k=16384)
        for start in range(0, 256, 64):
            wrapped.__getitems__(list(range(start, start + 64)))
    assert wrapped.nce_k == 192
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "crd_nce_k=16384" in warnings[0].getMessage() and "nce_k=192" in warnings[0].getMessage()


def test_no_warning_when_k_fits(caplog):
    with caplog.at_level(logging.WARNING, logger="hfkd.data.contrast"):
        assert ContrastSampler(unbalanced_labels(), nce_k=16).nce_k == 16
    assert not caplog.records


def test_a_single_class_is_refused():
    with pytest.raises(DataError, match="single class"):
        ContrastSampler(torch.zeros(10, dtype=torch.int64), nce_k=4)


def test_wrapper_on_decoded_dataset_adds_index_and_contrast_index(learnable_data):
    train, _ = learnable_data
    wrapped = ContrastiveDataset(train, nce_k=50, mode="exact")
    assert len(wrapped) == 256 and wrapped.n_data == 256 and torch.equal(wrapped.labels, train.labels)
    loader = torch.utils.data.DataLoader(wrapped, batch_size=32, shuffle=True, collate_fn=lambda batch: batch)
    seen = []
    for batch in loader:
        assert set(batch) == {"pixel_values", "labels", "index", "contrast_index"}
        assert batch["pixel_values"].shape == (32, 3, 32, 32) and batch["contrast_index"].shape == (32, 51)
        assert torch.equal(batch["labels"], train.labels[batch["index"]])
        assert torch.equal(batch["contrast_index"][:, 0], batch["index"])
        negatives = batch["contrast_index"][:, 1:]
        assert torch.all(train.labels[negatives] != batch["labels"][:, None])
        seen += batch["index"].tolist()
    assert sorted(seen) == list(range(256))
    item = wrapped[7]
    assert item["index"] == 7 and item["contrast_index"].shape == (51,) and item["labels"] == train.labels[7]


@pytest.mark.parametrize("label_column", [None, "coarse_label"])
def test_wrapper_on_a_transformed_datasets_dataset_reads_the_right_label_column(cifar_like_dir, label_column):
    data = prepare_datasets(
        DataArguments(dataset_name=cifar_like_dir, transform_preset="imagenet", label_column_name=label_column)
    )
    train = data.train_dataset  # per-image transforms over a datasets.Dataset: batches are dicts with "labels"
    wrapped = contrastive_dataset(train, nce_k=8, mode="relax")
    expected = torch.as_tensor(train.dataset[label_column or "fine_label"])
    assert torch.equal(wrapped.labels, expected)
    batch = wrapped.__getitems__([3, 0, 5, 9])
    assert batch["pixel_values"].shape == (4, 3, 224, 224)
    assert torch.equal(batch["index"], torch.tensor([3, 0, 5, 9]))
    assert torch.equal(batch["labels"], expected[[3, 0, 5, 9]])
    assert batch["contrast_index"].shape == (4, 9)
    assert torch.equal(expected[batch["contrast_index"][:, 0]], batch["labels"])  # relax: same class
    assert torch.all(expected[batch["contrast_index"][:, 1:]] != batch["labels"][:, None])


def test_label_columns_that_agree_at_first_are_told_apart_where_they_differ():
    import datasets

    same = [i % 3 for i in range(40)]
    other = same[:30] + [(v + 1) % 3 for v in same[30:]]  # equal to `same` on the first 30 rows only
    raw = datasets.Dataset.from_dict({"x": [float(i) for i in range(40)], "a": same, "b": other})
    fetched = []

    def transform(batch):
        fetched.extend(batch["x"])
        return {"pixel_values": [torch.tensor([x]) for x in batch["x"]], "labels": batch["b"]}

    wrapped = contrastive_dataset(raw.with_transform(transform), nce_k=4)
    assert wrapped.labels.tolist() == other
    assert len(fetched) == 17  # the 16 leading items, then the first row where the two columns differ


def gapped_labels() -> torch.Tensor:
    """Classes 0, 2, 3, 5 of sizes 2, 5, 9, 24 (classes 1 and 4 have no example): negative pools 38, 35, 31, 16."""
    return torch.tensor([0, 2, 3, 5])[unbalanced_labels()]


def pool_of(labels: torch.Tensor, i: int) -> list[int]:
    """Example i's negative pool as the sampler numbers it, made by hand: the other classes' examples, class by
    class, in index order within a class."""
    values = labels.tolist()
    return [j for c in sorted(set(values)) if c != values[i] for j in range(len(values)) if values[j] == c]


@pytest.mark.parametrize("budget", [None, 1, 100])  # one draw; one row per chunk (the max(1, ...) guard); two rows
def test_keys_draw_is_the_top_k_of_keyed_uniform_keys_over_the_pool(monkeypatch, budget):
    if budget is not None:
        monkeypatch.setattr(contrast, "_KEY_BUDGET", budget)
    labels = gapped_labels()
    sampler = ContrastSampler(labels, nce_k=12, draw="keys")
    # a row's keys are the widest pool's (38) from its own generator; torch's CPU generator fills them in order, so
    # a pool's keys are the first len(pool) of them whatever the width (the width only sizes the key matrix)
    width = 38
    for seed, epoch in [(0, 0), (7, 3)]:
        rows = sampler.sample(torch.arange(40), labels, epoch=epoch, seed=seed)
        for i in range(40):
            pool = pool_of(labels, i)
            generator = torch.Generator().manual_seed(int(keyed_hash(seed, epoch, torch.tensor(i), 0)))
            keys = torch.rand(width, generator=generator).tolist()[: len(pool)]
            top = sorted(range(len(pool)), key=lambda p: -keys[p])[:12]
            assert rows[i, 0] == i
            assert sorted(rows[i, 1:].tolist()) == sorted(pool[p] for p in top)


def test_numpy_draw_is_a_choice_over_the_pool_seeded_by_seed_epoch_and_index():
    labels = unbalanced_labels()
    sampler = ContrastSampler(labels, nce_k=10, draw="numpy")
    for seed, epoch in [(0, 0), (11, 4)]:
        rows = sampler.sample(torch.arange(40), labels, epoch=epoch, seed=seed)
        for i in range(40):
            pool = pool_of(labels, i)
            entropy = np.random.SeedSequence([seed, epoch, i, 0x6E6567])
            chosen = np.random.default_rng(entropy).choice(len(pool), 10, replace=False)
            assert rows[i].tolist() == [i, *(pool[p] for p in chosen)]


def test_relax_positive_is_the_keyed_member_of_its_class_in_index_order():
    labels = unbalanced_labels()
    sampler = ContrastSampler(labels, nce_k=8, mode="relax")
    for seed, epoch in [(0, 0), (5, 2)]:
        positives = sampler.sample(torch.arange(40), labels, epoch=epoch, seed=seed)[:, 0].tolist()
        for i in range(40):
            members = [j for j in range(40) if labels[j] == labels[i]]
            offset = int(keyed_hash(seed, epoch, torch.tensor(i), 1)) % 2**30 % len(members)
            assert positives[i] == members[offset]


@pytest.mark.parametrize("draw", DRAWS)
def test_seed_is_taken_modulo_2_64_and_the_defaults_are_epoch_0_seed_0(draw):
    labels = unbalanced_labels()
    sampler = ContrastSampler(labels, nce_k=10, draw=draw)
    index = torch.arange(8)

    def rows(**keyed):
        return sampler.sample(index, labels[index], **keyed)

    assert torch.equal(rows(), rows(epoch=0, seed=0))
    assert torch.equal(rows(seed=-1), rows(seed=2**64 - 1))  # a negative seed draws like its residue
    assert torch.equal(rows(seed=2**64 + 5), rows(seed=5))
    assert not torch.equal(rows(seed=2)[:, 1:], rows(seed=0)[:, 1:])


@pytest.mark.parametrize("draw", DRAWS)
def test_a_singleton_class_reaches_its_whole_pool_and_all_singletons_draw_every_other_example(draw):
    labels = torch.tensor([0, 1, 1, 2, 2, 2])  # pools 5, 4, 3: K = 3; the singleton's pool is the widest
    sampler = ContrastSampler(labels, nce_k=3, draw=draw)
    one = torch.tensor([0])
    seen = set()
    for epoch in range(30):  # each of the 5 is missed by an epoch's 3-subset with probability 2/5
        seen |= set(sampler.sample(one, labels[one], epoch=epoch)[0, 1:].tolist())
    assert seen == {1, 2, 3, 4, 5}
    labels = torch.tensor([3, 0, 2, 1])  # every example a class of its own
    rows = ContrastSampler(labels, nce_k=3, draw=draw).sample(torch.arange(4), labels)
    assert [sorted(row) for row in rows[:, 1:].tolist()] == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]


def test_refusals_and_the_lowered_k_warning_are_whole_sentences(caplog):
    with pytest.raises(DataError) as err:
        ContrastSampler(torch.tensor([], dtype=torch.int64), nce_k=4)
    assert str(err.value) == "CRD needs a non-empty training set"
    with pytest.raises(DataError) as err:
        ContrastSampler([0, 2, -3, 1], nce_k=4)
    assert str(err.value) == "CRD needs class labels >= 0, but the training set has label -3"
    for labels in ([7], [1, 1, 1]):  # one example; one class
        with pytest.raises(DataError) as err:
            ContrastSampler(labels, nce_k=4)
        assert str(err.value) == (
            "CRD draws its negatives from other classes, but the training set has a single class"
        )
    with caplog.at_level(logging.WARNING, logger="hfkd.data.contrast"):
        sampler = ContrastSampler(unbalanced_labels(), nce_k=20)
    assert sampler.nce_k == 16
    assert [r.getMessage() for r in caplog.records] == [
        (
            "CRD asked for crd_nce_k=20 negatives per example, but the largest class leaves only 16 examples of "
            "other classes in a training set of 40, so CRD uses nce_k=16."
        )
    ]


@pytest.mark.parametrize("draw", DRAWS)
def test_labels_and_indices_of_other_dtypes_draw_as_int64_ones(draw):
    labels = unbalanced_labels()
    index = torch.tensor([5, 0, 39, 17])
    expected = ContrastSampler(labels, nce_k=10, draw=draw).sample(index, labels[index], epoch=1)
    for built_from in (labels.float(), labels.to(torch.uint8), labels.tolist()):
        sampler = ContrastSampler(built_from, nce_k=10, draw=draw)
        for idx in (index, index.to(torch.int32), index.float()):
            for lab in (labels[index], labels[index].to(torch.uint8), labels[index].float()):
                assert torch.equal(sampler.sample(idx, lab, epoch=1), expected)


def recording_transform(label_column: str, fetched: list):
    """A per-item transform over a datasets.Dataset that notes which rows (their "x") it decoded."""

    def transform(batch):
        fetched.extend(int(x) for x in batch["x"])
        return {"pixel_values": [torch.tensor([x]) for x in batch["x"]], "labels": batch[label_column]}

    return transform


class Frames:
    """Not a datasets.Dataset, and its ``labels`` is a method, not the labels."""

    def labels(self):
        return [0, 1]


def test_training_labels_refusals_are_whole_sentences():
    import datasets

    with pytest.raises(DataError) as err:
        training_labels(Frames())
    assert str(err.value) == (
        "CRD cannot read the labels of a Frames; give it a `labels` attribute or use a datasets.Dataset or "
        "hfkd.data.DecodedImageDataset"
    )
    no_integers = datasets.Dataset.from_dict({"x": [0.0, 1.0], "name": ["a", "b"]})
    with pytest.raises(DataError) as err:
        training_labels(no_integers.with_transform(recording_transform("x", [])))
    assert str(err.value) == "CRD found no integer label column in the training set's columns ['x', 'name']"
    columns = {"x": [0.0, 1.0, 2.0], "a": [0, 1, 0], "b": [1, 1, 0], "c": [2.0, 2.0, 2.0]}
    unmatched = datasets.Dataset.from_dict(columns)
    with pytest.raises(DataError) as err:  # the items' labels come from c, a float column: neither a nor b matches
        training_labels(unmatched.with_transform(recording_transform("c", [])))
    assert str(err.value) == "CRD could not tell which of the columns ['a', 'b'] holds the training labels"


def test_training_labels_reads_a_labels_attribute_a_class_label_and_an_unsigned_column_as_int64():
    import datasets

    class WithLabels:
        labels = np.array([2, 0, 1], dtype=np.uint8)

    labels = training_labels(WithLabels())
    assert labels.dtype == torch.int64 and labels.tolist() == [2, 0, 1]
    values = [2, 0, 1, 1, 0]
    for feature in (datasets.ClassLabel(names=["p", "q", "r"]), datasets.Value("uint8")):
        features = datasets.Features({"x": datasets.Value("float32"), "label": feature})
        raw = datasets.Dataset.from_dict({"x": [0.0, 1.0, 2.0, 3.0, 4.0], "label": values}, features=features)
        labels = training_labels(raw.with_transform(recording_transform("label", [])))
        assert labels.dtype == torch.int64 and labels.tolist() == values


def test_identical_label_columns_give_those_labels_from_the_leading_items_alone():
    import datasets

    same = [i % 3 for i in range(40)]
    raw = datasets.Dataset.from_dict({"x": [float(i) for i in range(40)], "a": same, "b": same})
    fetched = []
    assert training_labels(raw.with_transform(recording_transform("b", fetched))).tolist() == same
    assert fetched == list(range(16))


def test_label_columns_differing_at_one_row_are_told_apart_by_decoding_that_row():
    import datasets

    same = [i % 3 for i in range(40)]
    other = [*same[:25], (same[25] + 1) % 3, *same[26:]]  # differs from `same` at row 25 alone
    raw = datasets.Dataset.from_dict({"x": [float(i) for i in range(40)], "a": same, "b": other})
    fetched = []
    assert training_labels(raw.with_transform(recording_transform("b", fetched))).tolist() == other
    assert fetched == [*range(16), 25]


class BatchOnly:
    """A training set that serves whole batches (``__getitems__``) and no single items; ``on_device`` leaves the
    contrastive indices to ``device_transform``. Its batches carry a batch-level ``source`` that is no tensor."""

    def __init__(self, labels: torch.Tensor, on_device: bool = False) -> None:
        self.labels = labels
        self.on_device = on_device
        self.calls = []

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices):
        self.calls.append(list(indices))
        index = torch.as_tensor(list(indices))
        return {"pixel_values": index.float()[:, None], "labels": self.labels[index], "source": "synthetic"}


def test_wrappers_default_to_exact_mode_seed_0_and_epoch_0():
    labels = unbalanced_labels()
    expected = ContrastSampler(labels, nce_k=8).sample(torch.arange(40), labels, epoch=0, seed=0)
    for wrapped in (ContrastiveDataset(BatchOnly(labels), nce_k=8), contrastive_dataset(BatchOnly(labels), nce_k=8)):
        assert wrapped.epoch == 0
        batch = wrapped.__getitems__(range(40))
        assert torch.equal(batch["contrast_index"], expected)
        assert torch.equal(batch["contrast_index"][:, 0], torch.arange(40))


@pytest.mark.parametrize("mode", ["exact", "relax"])
def test_wrappers_draw_with_their_mode_seed_and_epoch(mode):
    labels = unbalanced_labels()
    index = torch.tensor([4, 31, 0, 17, 22, 9])
    expected = ContrastSampler(labels, nce_k=8, mode=mode).sample(index, labels[index], epoch=2, seed=5)
    other_mode = ContrastSampler(labels, nce_k=8, mode={"exact": "relax", "relax": "exact"}[mode])
    assert not torch.equal(other_mode.sample(index, labels[index], epoch=2, seed=5), expected)
    for wrap in (ContrastiveDataset, contrastive_dataset):
        wrapped = wrap(BatchOnly(labels), nce_k=8, mode=mode, seed=5)
        wrapped.set_epoch(2)
        assert torch.equal(wrapped.__getitems__(index.tolist())["contrast_index"], expected)
        # a dataset that leaves its batches raw for the device: device_transform draws them, alike
        on_device = wrap(BatchOnly(labels, on_device=True), nce_k=8, mode=mode, seed=5)
        on_device.set_epoch(2)
        batch = on_device.__getitems__(index.tolist())
        assert "contrast_index" not in batch
        assert torch.equal(on_device.device_transform(batch)["contrast_index"], expected)


def test_a_batch_is_fetched_with_one_getitems_call_and_drawn_once():
    labels = unbalanced_labels()
    dataset = BatchOnly(labels)
    wrapped = ContrastiveDataset(dataset, nce_k=8)
    draws = []
    sample = wrapped.sampler.sample
    wrapped.sampler.sample = lambda *args: draws.append(args) or sample(*args)
    batch = wrapped.__getitems__(np.array([3, 1, 4], dtype=np.int32))
    assert dataset.calls == [[3, 1, 4]]
    assert batch["index"].dtype == torch.int64 and batch["index"].tolist() == [3, 1, 4]
    assert batch["source"] == "synthetic"
    out = wrapped.device_transform(batch)  # the batch already carries its draw: no second one
    assert len(draws) == 1 and torch.equal(out["contrast_index"], batch["contrast_index"])
    item = wrapped[5]
    assert dataset.calls[-1] == [5] and item["index"] == 5 and item["source"] == "synthetic"
    assert item["contrast_index"].shape == (9,) and item["contrast_index"][0] == 5


def test_a_plain_sequence_of_items_with_given_labels_is_fetched_item_by_item():
    items = [{"pixel_values": torch.full((2,), float(i)), "labels": i % 3} for i in range(6)]
    # classes of 2: every pool holds 4 examples, and K = 4 takes the whole pool
    wrapped = ContrastiveDataset(items, nce_k=4, labels=np.array([0, 1, 2, 0, 1, 2], dtype=np.uint8))
    assert wrapped.labels.dtype == torch.int64 and wrapped.labels.tolist() == [0, 1, 2, 0, 1, 2]
    batch = wrapped.__getitems__([4, 0])
    assert batch["pixel_values"].tolist() == [[4.0, 4.0], [0.0, 0.0]] and batch["labels"].tolist() == [1, 0]
    assert batch["contrast_index"][:, 0].tolist() == [4, 0]
    assert [sorted(row) for row in batch["contrast_index"][:, 1:].tolist()] == [[0, 2, 3, 5], [1, 2, 4, 5]]
    with pytest.raises(DataError) as err:
        ContrastiveDataset(items, nce_k=4, labels=[0, 1, 2])
    assert str(err.value) == "CRD has 3 labels for a training set of 6 examples"


def test_set_epoch_reaches_the_wrapped_dataset_and_rewrapping_wraps_the_inner_one():
    labels = torch.tensor([0, 1, 1, 2, 2, 2])
    inner = DecodedImageDataset(torch.zeros(6, 3, 4, 4, dtype=torch.uint8), labels, lambda x, index, epoch: x.float())
    wrapped = contrastive_dataset(inner, nce_k=2)
    wrapped.set_epoch(3)
    assert wrapped.epoch == 3 and inner.epoch == 3
    rewrapped = contrastive_dataset(wrapped, nce_k=1, mode="relax")
    assert rewrapped.dataset is inner and rewrapped.nce_k == 1 and rewrapped.sampler.mode == "relax"
