"""Training data for contrastive distillation (CRD): dataset indices plus K negatives from the other classes.

Tian, Krishnan and Isola, "Contrastive Representation Distillation", ICLR 2020; the data side follows the reference
``CIFAR100InstanceSample`` (spec 5.2): every training item carries its dataset ``index`` and a ``contrast_index`` row
of length K+1 whose first entry is the positive (the example itself in ``exact`` mode, a random example of the same
class in ``relax`` mode), followed by K negatives drawn uniformly without replacement from the other classes, drawn
afresh on every access. Everything here works from the label array alone: no image is decoded to draw negatives.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from .collate import collate_image_batch
from .keyed_random import keyed_hash, keyed_integers
from .shared_epoch import SharedEpoch, SharedEpochMixin

logger = logging.getLogger(__name__)

CONTRAST_MODES = ("exact", "relax")
# how a row's negatives are drawn (ContrastSampler): "auto" is "numpy" for indices on the CPU, "keys" elsewhere
NEGATIVE_DRAWS = ("auto", "numpy", "keys")
# random keys drawn in one go by the sampler (rows are processed in chunks above this): bounds its memory to 64 MiB
_KEY_BUDGET = 1 << 24
# the last word of a numpy-drawn row's seed entropy: keeps its stream apart from any other use of the same counters
_NUMPY_DRAW_TAG = 0x6E6567  # "neg"
# a label column must match the transformed items' "labels" on this many leading examples
_LABEL_PROBE = 16


class ContrastSampler:
    """Draws ``contrast_index`` rows ``[B, K+1]`` for a batch of dataset indices and their labels (spec 5.2).

    The dataset indices are kept sorted by class (``order``), so the negative pool of class c, "every index of
    another class", is the positions ``[0, N - n_c)`` of ``order`` with class c's block ``[start_c, start_c + n_c)``
    cut out. A row's K negatives are a uniform K-subset of positions in its pool, hence no repeats within a row,
    drawn in one of two ways (``draw``):

    - ``"numpy"`` (the default for indices on the CPU): numpy's ``Generator.choice(pool, K, replace=False)``, a
      partial Fisher-Yates shuffle, O(K) per row after an O(pool) setup, where the keys below draw a random number
      for every index of the pool and take the top K; the reference's legacy ``np.random.choice`` shuffles the
      whole pool per item. Timings of the three are in BENCHMARKS.md.
    - ``"keys"`` (the default elsewhere: tensor ops on the indices' device, a GPU with ``augment_on_device``): the K
      largest of uniform random keys over the pool (keys past the end of a smaller pool masked to -1), O(B x N)
      time and memory per batch, in chunks of at most ``_KEY_BUDGET`` keys.

    Each row's generator is seeded from (seed, epoch, dataset index) alone (``keyed_random``; numpy's
    ``SeedSequence``): an epoch gives every example a fresh draw, and the draw does not depend on the process, worker
    or batch the example lands in, so data-parallel and resumed runs draw exactly what a single uninterrupted run
    draws. Both keep O(N) memory for the class-sorted order, not the O(classes x N) of a per-class table.

    When the smallest negative pool (that of the largest class) holds fewer than ``nce_k`` indices (a small
    dataset), K is lowered to that pool's size with one warning, so every row is still drawn without replacement.
    """

    def __init__(
        self, labels: torch.Tensor | Sequence[int], nce_k: int, mode: str = "exact", draw: str = "auto"
    ) -> None:
        # ``mode`` and ``nce_k`` come from a checked recipe (DistillationConfig validates crd_mode and crd_nce_k)
        if draw not in NEGATIVE_DRAWS:
            raise ValueError(f"draw {draw!r} is not one of {', '.join(map(repr, NEGATIVE_DRAWS))}")
        self.draw = draw
        labels = torch.as_tensor(labels).flatten().to("cpu", torch.int64)
        if labels.numel() == 0:
            raise DataError("CRD needs a non-empty training set")
        if int(labels.min()) < 0:
            raise DataError(f"CRD needs class labels >= 0, but the training set has label {int(labels.min())}")
        counts = torch.bincount(labels)
        present = counts[counts > 0]
        n_data = labels.numel()
        smallest_pool = n_data - int(present.max())
        if smallest_pool == 0:
            raise DataError("CRD draws its negatives from other classes, but the training set has a single class")
        self.mode = mode
        self.n_data = n_data
        self.requested_k = int(nce_k)
        self.nce_k = min(self.requested_k, smallest_pool)
        if self.nce_k < self.requested_k:
            logger.warning(
                "CRD asked for crd_nce_k=%d negatives per example, but the largest class leaves only %d examples of "
                "other classes in a training set of %d, so CRD uses nce_k=%d.",
                self.requested_k, smallest_pool, n_data, self.nce_k,
            )
        # the widest pool (that of the smallest class): the width of the random-key matrix
        self.width = n_data - int(present.min())
        self._order = torch.argsort(labels, stable=True)
        self._start = torch.cumsum(counts, 0) - counts
        self._counts = counts
        self._tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The (order, start, counts) tables on ``device``, copied there once."""
        if device not in self._tables:
            self._tables[device] = (self._order.to(device), self._start.to(device), self._counts.to(device))
        return self._tables[device]

    def _row_keys(self, index: torch.Tensor, seed: int, epoch: int, slot: int, width: int) -> torch.Tensor:
        """``[B, width]`` uniform keys, row ``b`` from a generator seeded by (seed, epoch, index[b], slot)."""
        seeds = keyed_hash(seed, epoch, index, slot).tolist()
        keys = torch.empty(len(seeds), width, device=index.device)
        generator = torch.Generator(device=index.device)
        for row, row_seed in enumerate(seeds):
            generator.manual_seed(row_seed)
            torch.rand(width, generator=generator, out=keys[row])
        return keys

    def _positions_by_keys(self, index: torch.Tensor, pool: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
        """``[B, K]`` distinct positions in ``[0, pool[b])`` per row: the top K of uniform keys, on index's device."""
        k, width = self.nce_k, self.width
        positions = torch.empty(index.numel(), k, dtype=torch.int64, device=index.device)
        columns = torch.arange(width, device=index.device)
        rows = max(1, _KEY_BUDGET // width)
        for lo in range(0, index.numel(), rows):
            part = slice(lo, lo + rows)
            keys = self._row_keys(index[part], seed, epoch, 0, width)
            keys.masked_fill_(columns >= pool[part, None], -1.0)
            positions[part] = keys.topk(k, dim=1, sorted=False).indices
        return positions

    def _positions_by_numpy(self, index: torch.Tensor, pool: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
        """``[B, K]`` distinct positions in ``[0, pool[b])`` per row: numpy's choice without replacement, each row
        from a generator seeded by (seed, epoch, index[b]); on the CPU, moved to index's device."""
        positions = np.empty((index.numel(), self.nce_k), dtype=np.int64)
        for row, (example, size) in enumerate(zip(index.tolist(), pool.tolist())):
            entropy = np.random.SeedSequence([seed % 2**64, epoch, example, _NUMPY_DRAW_TAG])
            positions[row] = np.random.default_rng(entropy).choice(size, self.nce_k, replace=False)
        return torch.from_numpy(positions).to(index.device)

    def sample(self, index: torch.Tensor, labels: torch.Tensor, epoch: int = 0, seed: int = 0) -> torch.Tensor:
        """``[B, K+1]`` int64 on ``index``'s device: the positive first, then K distinct other-class negatives."""
        device = index.device
        order, start, counts = self._on(device)
        index = index.to(torch.int64).flatten()
        labels = labels.to(device, torch.int64).flatten()
        class_size, class_start = counts[labels], start[labels]
        pool = self.n_data - class_size
        by_numpy = self.draw == "numpy" or (self.draw == "auto" and device.type == "cpu")
        position = (self._positions_by_numpy if by_numpy else self._positions_by_keys)(index, pool, seed, epoch)
        # skip over the row's own class block in the class-sorted order (in place: [B, K] int64 temporaries are a
        # large part of the draw's cost)
        position += class_size[:, None] * (position >= class_start[:, None])
        rows_out = torch.empty(index.numel(), self.nce_k + 1, dtype=torch.int64, device=device)
        rows_out[:, 1:] = order[position]
        if self.mode == "exact":
            rows_out[:, 0] = index
        else:
            offset = keyed_integers(seed, epoch, index, 1, 1 << 30) % class_size
            rows_out[:, 0] = order[class_start + offset]
        return rows_out


def training_labels(dataset: Any) -> torch.Tensor:
    """Every label of a training set as int64 ``[N]``, read without decoding images.

    Uses a ``labels`` attribute when the dataset has one (``DecodedImageDataset``). For a ``datasets.Dataset`` with a
    per-image transform, the raw integer columns are read (one Arrow column each) and the one whose values match the
    ``labels`` of the transformed items is taken: a few leading items are decoded, plus one at the first position
    where two remaining columns disagree.
    """
    labels = getattr(dataset, "labels", None)
    if labels is not None and not callable(labels):
        return torch.as_tensor(labels).to(torch.int64).flatten()
    import datasets

    if not isinstance(dataset, datasets.Dataset):
        raise DataError(
            f"CRD cannot read the labels of a {type(dataset).__name__}; give it a `labels` attribute or use a "
            f"datasets.Dataset or hfkd.data.DecodedImageDataset"
        )
    raw = dataset.with_format(None)
    candidates = [c for c, f in raw.features.items() if _is_integer_feature(f)]
    if not candidates:
        raise DataError(f"CRD found no integer label column in the training set's columns {raw.column_names}")
    columns = {c: torch.as_tensor(raw[c], dtype=torch.int64).flatten() for c in candidates}
    probe = list(range(min(_LABEL_PROBE, len(dataset))))
    expected = _item_labels(dataset, probe)
    columns = {c: v for c, v in columns.items() if torch.equal(v[probe], expected)}
    # candidates that agree on the probe but differ later are told apart at their first difference
    while len(columns) > 1:
        first, *others = columns.values()
        differing = [v for v in others if not torch.equal(v, first)]
        if not differing:
            break
        position = int((differing[0] != first).nonzero()[0])
        label = _item_labels(dataset, [position])
        columns = {c: v for c, v in columns.items() if torch.equal(v[[position]], label)}
    if not columns:
        raise DataError(f"CRD could not tell which of the columns {candidates} holds the training labels")
    return next(iter(columns.values()))


def _item_labels(dataset: Any, indices: list[int]) -> torch.Tensor:
    """The ``labels`` of some (transformed) items, decoding only those."""
    items = dataset.__getitems__(indices)
    return torch.as_tensor([int(item["labels"]) for item in items], dtype=torch.int64)


def _is_integer_feature(feature: Any) -> bool:
    import datasets

    if isinstance(feature, datasets.ClassLabel):
        return True
    return isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint"))


class ContrastiveDataset(SharedEpochMixin, torch.utils.data.Dataset):
    """A training set whose batches also carry ``index`` ``[B]`` and ``contrast_index`` ``[B, K+1]`` (int64).

    Batches come from the wrapped dataset's ``__getitems__`` (a dict batch from ``DecodedImageDataset``, or a list of
    items from a ``datasets.Dataset``, stacked here), so the sampler runs once per batch, vectorised. ``n_data`` (the
    training-set size) is an attribute of the dataset, which the CRD method reads to size its memory bank.
    """

    def __init__(
        self, dataset: Any, nce_k: int, mode: str = "exact", labels: torch.Tensor | None = None, seed: int = 0
    ) -> None:
        self.dataset = dataset
        self.seed = seed
        self._epoch = SharedEpoch(0)  # read by DataLoader workers too, also persistent ones (``shared_epoch``)
        self.labels = training_labels(dataset) if labels is None else torch.as_tensor(labels).to(torch.int64)
        if len(self.labels) != len(dataset):
            raise DataError(f"CRD has {len(self.labels)} labels for a training set of {len(dataset)} examples")
        self.sampler = ContrastSampler(self.labels, nce_k, mode)

    @property
    def n_data(self) -> int:
        return self.sampler.n_data

    @property
    def nce_k(self) -> int:
        """K actually used (``crd_nce_k``, or less on a small dataset)."""
        return self.sampler.nce_k

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next batches belong to (for the keyed draws); forwarded to the wrapped dataset."""
        super().set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Any]:
        index = torch.as_tensor(list(indices), dtype=torch.int64)
        if hasattr(self.dataset, "__getitems__"):
            items = self.dataset.__getitems__(list(indices))
        else:
            items = [self.dataset[i] for i in indices]
        batch = dict(collate_image_batch(items))
        batch["index"] = index
        if not getattr(self.dataset, "on_device", False):  # else device_transform draws them on the device
            batch["contrast_index"] = self.sampler.sample(index, self.labels[index], self.epoch, self.seed)
        return batch

    @property
    def on_device(self) -> bool:
        return getattr(self.dataset, "on_device", False)

    def device_transform(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The wrapped dataset's device transform, then the contrastive indices drawn on the batch's device.

        Both use the epoch set by ``set_epoch`` (forwarded to the wrapped dataset), as ``__getitems__`` does.
        """
        index = batch["index"]
        if hasattr(self.dataset, "device_transform"):
            batch = self.dataset.device_transform(batch)
        batch = {**batch, "index": index}
        if "contrast_index" not in batch:
            batch["contrast_index"] = self.sampler.sample(index, batch["labels"], self.epoch, self.seed)
        return batch

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {k: v[0] if isinstance(v, torch.Tensor) else v for k, v in self.__getitems__([i]).items()}


def contrastive_dataset(dataset: Any, nce_k: int, mode: str = "exact", seed: int = 0) -> ContrastiveDataset:
    """Wrap ``dataset`` for CRD (an already wrapped one is re-wrapped around its inner dataset)."""
    if isinstance(dataset, ContrastiveDataset):
        dataset = dataset.dataset
    return ContrastiveDataset(dataset, nce_k, mode, seed=seed)
